"""Domain exceptions become HTTP answers here, and only here. Never a stack trace to a client."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from botfleet import errors as e

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[e.BotfleetError], int] = {
    e.BotNotFound: 404,
    e.RunNotFound: 404,
    e.PlanNotFound: 404,
    e.BotDeleted: 410,
    e.BotNameTaken: 409,
    e.CleanupInProgress: 409,
    e.RestoreExpired: 409,
    e.EngineUnavailable: 503,
    e.NoEngineAvailable: 503,
    e.LockLost: 503,
}


def install(app: FastAPI) -> None:
    @app.exception_handler(e.BotfleetError)
    async def _domain_error(_request: Request, exc: e.BotfleetError) -> JSONResponse:
        status = next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 500)
        body: dict[str, object] = {"detail": str(exc)}
        if isinstance(exc, e.CleanupInProgress):
            body["run_id"] = str(exc.run_id) if exc.run_id else None
        return JSONResponse(body, status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)
