"""Results: posted by a bot with its own token, read by operators with the admin token."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from botfleet.api.deps import UNAUTHORIZED_HEADERS, AdminDep, ServicesDep, client_ip
from botfleet.api.params import PageDep
from botfleet.api.responses import AUTH, BODY, errors
from botfleet.api.schemas.results import (
    ResultIn,
    ResultList,
    ResultOut,
    ResultsAccepted,
    ResultsBody,
)
from botfleet.auth import bearer_token
from botfleet.errors import BotTokenInvalid
from botfleet.results import ResultService
from botfleet.store.models import utcnow

router = APIRouter(prefix="/bots/{bot_id}/results", tags=["results"])


async def result_service(services: ServicesDep) -> ResultService:
    admin = services.settings.admin_token
    return ResultService(
        db=services.db,
        sessions=services.sessions,
        admin_token=admin.get_secret_value() if admin else "",
    )


ResultsDep = Annotated[ResultService, Depends(result_service)]
# Documents the bot's own token in the OpenAPI document; the check is post_results' own.
BOT_SCHEME = HTTPBearer(auto_error=False, scheme_name="BotToken", description="the bot's BOT_TOKEN")
BotScheme = Annotated[HTTPAuthorizationCredentials | None, Security(BOT_SCHEME)]


@router.post(
    "",
    status_code=201,
    response_model=ResultsAccepted,
    responses=errors(*AUTH, *BODY, 403, 404, 410),
)
async def post_results(
    bot_id: uuid.UUID,
    request: Request,
    results: ResultsDep,
    services: ServicesDep,
    body: Annotated[ResultsBody, Body()],
    _scheme: BotScheme = None,
) -> ResultsAccepted:
    """``{"data": …}`` or a list of up to 1000 of them, with the bot's own token."""
    # Unknown tokens count against the address like wrong admin tokens do (429 + Retry-After).
    limiter = services.bot_auth_limiter
    ip = client_ip(request)
    limiter.check(ip)
    token = bearer_token(request.headers.get("authorization"))
    items = [body.data] if isinstance(body, ResultIn) else [item.data for item in body]
    try:
        if token is None:
            raise HTTPException(401, "missing bearer token", headers=UNAUTHORIZED_HEADERS)
        accepted = await results.ingest(bot_id, token, items, now=utcnow())
    except (HTTPException, BotTokenInvalid) as exc:
        if getattr(exc, "status_code", 401) == 401:
            limiter.failed(ip, request.url.path)
        raise
    return ResultsAccepted(accepted=accepted)


@router.get("", response_model=ResultList, responses=errors(*AUTH, 404, 422))
async def list_results(
    bot_id: uuid.UUID, results: ResultsDep, _admin: AdminDep, page: PageDep
) -> ResultList:
    """Newest first, with ``total``."""
    found = await results.list(bot_id, page)
    return ResultList(
        items=[ResultOut.model_validate(r) for r in found.items],
        total=found.total,
        next_cursor=found.next_cursor,
    )
