"""Typed dependencies: the app's services, a database session, the admin caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.auth import bearer_token, fingerprint, tokens_equal
from botfleet.services import Services


async def get_services(request: Request) -> Services:
    # async: a plain def dependency costs a thread-pool hop on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@dataclass(frozen=True)
class Admin:
    """An authenticated operator; ``actor`` names them in audit records without the token."""

    actor: str


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}
# Declares the scheme in the OpenAPI document (Swagger's Authorize button, Schemathesis'
# ignored_auth check); it never answers by itself: require_admin decides, always with a 401.
ADMIN_SCHEME = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="ADMIN_TOKEN")
AdminScheme = Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_SCHEME)]


def require_admin(request: Request, services: ServicesDep, _scheme: AdminScheme = None) -> Admin:
    expected = services.settings.admin_token
    token = bearer_token(request.headers.get("authorization"))
    limiter = services.auth_limiter
    ip = client_ip(request)
    limiter.check(ip)
    if token is None or expected is None or not tokens_equal(token, expected.get_secret_value()):
        limiter.failed(ip, request.url.path)
        raise HTTPException(401, "missing or invalid bearer token", headers=UNAUTHORIZED_HEADERS)
    return Admin(actor=f"api:{fingerprint(token)}@{ip}")


AdminDep = Annotated[Admin, Depends(require_admin)]
