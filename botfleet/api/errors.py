"""Domain exceptions become HTTP answers here, and only here. Never a stack trace to a client."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from botfleet import errors as domain

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[domain.BotfleetError], int] = {
    domain.BotNotFound: 404,
    domain.RunNotFound: 404,
    domain.PlanNotFound: 404,
    domain.BotDeleted: 410,
    domain.BotTokenInvalid: 401,
    domain.BotTokenForbidden: 403,
    domain.InvalidInput: 422,
    domain.ImageNotAvailable: 422,
    domain.ContainerFailed: 502,
    domain.BotNameTaken: 409,
    domain.CleanupInProgress: 409,
    domain.RestoreExpired: 409,
    domain.TooManyAuthFailures: 429,
    domain.EngineUnavailable: 503,
    domain.RegistryUnavailable: 503,
    domain.NoEngineAvailable: 503,
    domain.LockLost: 503,
}


def install(app: FastAPI) -> None:
    @app.exception_handler(domain.BotfleetError)
    async def _domain_error(_request: Request, exc: domain.BotfleetError) -> JSONResponse:
        status = next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 500)
        body: dict[str, object] = {"detail": str(exc)}
        if isinstance(exc, domain.CleanupInProgress):
            body["run_id"] = str(exc.run_id) if exc.run_id else None
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, domain.TooManyAuthFailures):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette's Allow names the first matching route's methods only; the resource's
            # are every route's (GET and DELETE /bots/{bot_id} are two routes).
            allowed = _allowed_methods(request)
            if allowed:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler, except that the echoed input may hold what JSON cannot
        # (a lone surrogate, NaN): rendering it must not turn a 422 into a 500.
        detail = _renderable(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)


def _renderable(value: Any) -> Any:
    """``value`` with lone surrogates backslash-escaped and non-finite floats as strings."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_renderable(k): _renderable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_renderable(v) for v in value]
    return value


def _allowed_methods(request: Request) -> list[str]:
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed
