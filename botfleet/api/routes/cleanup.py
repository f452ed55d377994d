"""Admin endpoints of the cleanup service: a thin layer over :mod:`botfleet.cleanup`.

``POST /admin/cleanup?dry_run=true|false`` is the seed's contract: its curl commands work as
written, and an omitted ``dry_run`` plans only (the safe default).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query

from botfleet.api.deps import AdminDep, ServicesDep
from botfleet.api.params import cursor_query, limit_query, offset_query
from botfleet.api.responses import AUTH, errors
from botfleet.api.schemas import patterns
from botfleet.api.schemas.cleanup import (
    RUN_ID,
    CleanupReport,
    CleanupStatus,
    Explanation,
    Orphans,
    RunDetail,
    RunList,
    RunStatus,
)
from botfleet.api.schemas.errors import CleanupBusy
from botfleet.cleanup.plan import STAGES
from botfleet.constants import TRIGGER_MANUAL
from botfleet.errors import InvalidInput
from botfleet.pagination import PageRequest

router = APIRouter(prefix="/admin/cleanup", tags=["cleanup"])


def parse_dry_run(value: str | None) -> bool:
    """true/false/1/0 in any case; omitted means a dry run. Anything else is a 422."""
    if value is None:
        return True
    if not patterns.matches(patterns.DRY_RUN, value):
        raise InvalidInput("dry_run", f"accepts true, false, 1 or 0; got {value[:40]!r}")
    return value.lower() in ("true", "1")


def check_only(value: str | None) -> str | None:
    if value is not None and not patterns.matches(patterns.ONLY, value):
        # The service names the bad stage; a value the pattern refuses may have none.
        raise InvalidInput(
            "only", f"accepts a comma-separated list of {', '.join(STAGES)}; got {value[:60]!r}"
        )
    return value


@router.post(
    "",
    response_model=None,
    responses={
        200: {
            "model": CleanupReport,
            "description": "The run's report.",
            "links": {
                "RunDetail": {
                    "operationId": "cleanup_run",
                    "parameters": {"run_id": "$response.body#/run_id"},
                },
            },
        },
        **errors(*AUTH, 404, 409, 422, 503, s409=CleanupBusy),
    },
)
async def run_cleanup(
    services: ServicesDep,
    admin: AdminDep,
    dry_run: str | None = Query(
        None,
        description="`true`, `false`, `1` or `0` in any case; omitted: a dry run.",
        json_schema_extra={"pattern": patterns.DRY_RUN},
    ),
    only: str | None = Query(
        None,
        description=f"Comma-separated stages ({', '.join(STAGES)}); omitted: every stage.",
        json_schema_extra={"pattern": patterns.ONLY},
    ),
    plan_id: uuid.UUID | None = Query(
        None, description="Execute exactly this dry run's plan (404 if unknown).", examples=[RUN_ID]
    ),
) -> dict[str, Any]:
    """Run a cleanup now and answer with its report (409 with ``run_id`` if one is running)."""
    return await services.cleanup.run(
        trigger=TRIGGER_MANUAL,
        actor=admin.actor,
        dry_run=parse_dry_run(dry_run),
        only=check_only(only),
        plan_id=plan_id,
    )


@router.get(
    "/status", response_model=None, responses={200: {"model": CleanupStatus}, **errors(*AUTH)}
)
async def cleanup_status(services: ServicesDep, _admin: AdminDep) -> dict[str, Any]:
    """Service and scheduler state: mode, retention, the running run, the last report."""
    status = await services.cleanup.status()
    status.update(services.scheduler.status())
    return status


@router.get(
    "/orphans", response_model=None, responses={200: {"model": Orphans}, **errors(*AUTH, 422)}
)
async def cleanup_orphans(
    services: ServicesDep, _admin: AdminDep, limit: int = limit_query("Items listed per kind.")
) -> dict[str, Any]:
    """What is orphaned right now, per kind, including what grace or running state protects."""
    return await services.cleanup.orphans(limit=limit)


@router.get("/runs", response_model=None, responses={200: {"model": RunList}, **errors(*AUTH, 422)})
async def cleanup_runs(
    services: ServicesDep,
    _admin: AdminDep,
    limit: int = limit_query("Page size."),
    cursor: str | None = cursor_query(),
    offset: int | None = offset_query(),
    status: RunStatus | None = Query(None, description="Only runs with this status."),
) -> dict[str, Any]:
    """Run history, newest first."""
    page = PageRequest(limit=limit, cursor=cursor, offset=offset)
    result = await services.cleanup.runs(page, status=status)
    return {"items": result.items, "total": result.total, "next_cursor": result.next_cursor}


@router.get(
    "/runs/{run_id}",
    response_model=None,
    responses={200: {"model": RunDetail}, **errors(*AUTH, 404, 422)},
)
async def cleanup_run(
    services: ServicesDep,
    _admin: AdminDep,
    run_id: uuid.UUID,
    audit_limit: int = limit_query("Audit items per page."),
    audit_cursor: str | None = cursor_query("audit_cursor"),
) -> dict[str, Any]:
    """One run: its report, plan and a page of its audit records."""
    page = PageRequest(limit=audit_limit, cursor=audit_cursor)
    return await services.cleanup.get_run(run_id, page)


@router.get(
    "/explain/{bot_id}",
    response_model=None,
    responses={200: {"model": Explanation}, **errors(*AUTH, 404, 422)},
)
async def cleanup_explain(services: ServicesDep, _admin: AdminDep, bot_id: uuid.UUID) -> Any:
    """Which retention rule applies to the bot, why, and when each of its resources becomes
    due (purge date, result retention and quota, idle date), or that it is held."""
    return await services.cleanup.explain(bot_id)
