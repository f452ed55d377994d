"""Liveness and readiness: unauthenticated, tiny."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from botfleet.api.deps import ServicesDep
from botfleet.api.schemas.errors import Unready

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Unready, "description": "The database does not answer."}},
)
async def readyz(services: ServicesDep) -> JSONResponse | dict[str, str]:
    """The database answers."""
    try:
        async with services.db.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "detail": f"database: {type(exc).__name__}"}, 503
        )
    return {"status": "ok"}
