"""Admin endpoints of the cleanup service: a thin layer over :mod:`botfleet.cleanup`.

``POST /admin/cleanup?dry_run=true|false`` is the seed's contract: its curl commands work as
written, and an omitted ``dry_run`` plans only (the safe default).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query

from botfleet.api.deps import AdminDep, ServicesDep
from botfleet.constants import DEFAULT_PAGE_LIMIT, TRIGGER_MANUAL
from botfleet.errors import InvalidInput
from botfleet.pagination import PageRequest

router = APIRouter(prefix="/admin/cleanup", tags=["cleanup"])

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def parse_dry_run(value: str | None) -> bool:
    """true/false/1/0 in any case; omitted means a dry run. Anything else is a 422."""
    if value is None:
        return True
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput("dry_run", f"accepts true, false, 1 or 0; got {value[:40]!r}")


@router.post("")
async def run_cleanup(
    services: ServicesDep,
    admin: AdminDep,
    dry_run: str | None = Query(None, description="true|false|1|0; omitted: a dry run"),
    only: str | None = Query(None, description="comma-separated stages, e.g. bots,containers"),
    plan_id: str | None = Query(None, description="execute exactly this dry run's plan"),
) -> dict[str, Any]:
    """Run a cleanup now and answer with its report (409 with ``run_id`` if one is running)."""
    return await services.cleanup.run(
        trigger=TRIGGER_MANUAL,
        actor=admin.actor,
        dry_run=parse_dry_run(dry_run),
        only=only,
        plan_id=plan_id,
    )


@router.get("/status")
async def cleanup_status(services: ServicesDep, _admin: AdminDep) -> dict[str, Any]:
    """Service and scheduler state: mode, retention, the running run, the last report."""
    status = await services.cleanup.status()
    status.update(services.scheduler.status())
    return status


@router.get("/orphans")
async def cleanup_orphans(
    services: ServicesDep,
    _admin: AdminDep,
    limit: int = Query(DEFAULT_PAGE_LIMIT, description="items listed per kind (1-1000)"),
) -> dict[str, Any]:
    """What is orphaned right now, per kind, including what grace or running state protects."""
    return await services.cleanup.orphans(limit=limit)


@router.get("/runs")
async def cleanup_runs(
    services: ServicesDep,
    _admin: AdminDep,
    limit: int = Query(DEFAULT_PAGE_LIMIT),
    cursor: str | None = Query(None),
    offset: int | None = Query(None),
    status: str | None = Query(None, description="only runs with this status"),
) -> dict[str, Any]:
    """Run history, newest first."""
    page = PageRequest(limit=limit, cursor=cursor, offset=offset)
    result = await services.cleanup.runs(page, status=status)
    return {"items": result.items, "total": result.total, "next_cursor": result.next_cursor}


@router.get("/runs/{run_id}")
async def cleanup_run(
    services: ServicesDep,
    _admin: AdminDep,
    run_id: str,
    audit_limit: int = Query(DEFAULT_PAGE_LIMIT),
    audit_cursor: str | None = Query(None),
) -> dict[str, Any]:
    """One run: its report, plan and a page of its audit records."""
    try:
        key = uuid.UUID(run_id)
    except ValueError:
        raise InvalidInput("run_id", f"accepts a run id (UUID); got {run_id[:60]!r}") from None
    page = PageRequest(limit=audit_limit, cursor=audit_cursor)
    return await services.cleanup.get_run(key, page)
