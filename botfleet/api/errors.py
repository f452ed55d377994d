"""Domain exceptions become HTTP answers here, and only here. Never a stack trace to a client.

Every error answers one documented shape (``schemas/errors.py``): ``{"detail": "<one line>"}``,
and on a 422 also ``"errors": [{"field", "message"}, …]``. Our own refusals
(:class:`~botfleet.errors.InvalidInput`, which names its field) and FastAPI's request
validation (a list of pydantic errors) are both turned into it, so a client reads one shape:
``detail`` stays the string the seed's curl users, the CLI and the scripts have always shown.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from botfleet import errors as domain
from botfleet.api.schemas.results import BODY_UNION_TAGS

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[domain.BotfleetError], int] = {
    domain.BotNotFound: 404,
    domain.WorkloadGone: 404,
    domain.LogsUnreadable: 502,
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
# A 422 lists at most this many fields in its one-line ``detail`` (``errors`` has them all).
DETAIL_FIELDS = 5
_SOURCES = ("body", "query", "path", "header", "cookie")


def install(app: FastAPI) -> None:
    @app.exception_handler(domain.BotfleetError)
    async def _domain_error(_request: Request, exc: domain.BotfleetError) -> JSONResponse:
        status = next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 500)
        body: dict[str, object] = {"detail": _text(str(exc))}
        if isinstance(exc, domain.InvalidInput):
            body["errors"] = [{"field": exc.field, "message": _text(exc.message)}]
        elif isinstance(exc, domain.ImageNotAvailable):
            body["errors"] = [{"field": "image", "message": _text(str(exc).split(": ", 1)[-1])}]
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
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)


def validation_body(problems: Any) -> dict[str, Any]:
    """FastAPI's validation errors as the one error shape: a line naming the fields, and each
    field with its message. The echoed input is dropped: it may hold what JSON cannot render
    (a lone surrogate, NaN), and the caller sent it anyway."""
    errors = [{"field": _field(p), "message": _message(p)} for p in problems]
    shown = [f"{e['field']}: {e['message']}" for e in errors[:DETAIL_FIELDS]]
    more = len(errors) - DETAIL_FIELDS
    detail = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    return {"detail": detail or "invalid request", "errors": errors}


def _field(problem: dict[str, Any]) -> str:
    loc = [str(part) for part in problem.get("loc", ())]
    source = loc[0] if loc and loc[0] in _SOURCES else None
    path = loc[1:] if source else loc
    if source == "body" and path and path[0] in BODY_UNION_TAGS:
        path = path[1:]  # the branch of a body that is one item or a list of them
    if problem.get("type") == "json_invalid":
        path = []  # its loc ends in a character offset, not a field
    return _text(".".join(path) or source or "request")


def _message(problem: dict[str, Any]) -> str:
    message = str(problem.get("msg") or "invalid").removeprefix("Value error, ")
    reason = (problem.get("ctx") or {}).get("error")
    if problem.get("type") == "json_invalid" and reason:
        message = f"{message}: {reason}"
    return _text(message)


def _text(value: str) -> str:
    """``value`` with lone surrogates backslash-escaped, so that JSON can always render it."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _allowed_methods(request: Request) -> list[str]:
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed
