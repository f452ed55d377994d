"""The run history: runs newest first, and one run with its report, plan and audit trail.

Lists answer ``{"items", "total", "next_cursor"}`` (design.md) with keyset cursors from
:mod:`botfleet.pagination`, so paging stays stable while new runs arrive in front.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.cleanup.audit import ITEM_FIELDS, expand, items_of, page_slices
from botfleet.cleanup.run_records import running_run_id
from botfleet.config import Settings
from botfleet.constants import RUN_RUNNING, RUN_STATUSES
from botfleet.errors import InvalidInput, RunNotFound
from botfleet.pagination import Page, PageRequest, decode_cursor, encode_cursor
from botfleet.store.models import CleanupAudit, CleanupRun
from botfleet.store.session import SessionFactory


def _run_summary(run: CleanupRun) -> dict[str, Any]:
    report = run.report or {}
    resources = report.get("resources") or {}
    return {
        "id": str(run.id),
        "trigger": run.trigger,
        "actor": run.actor,
        "dry_run": run.dry_run,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "owner": run.owner,
        "plan_id": report.get("plan_id"),
        "found": {k: v.get("found", 0) for k, v in resources.items()},
        "deleted": {k: v.get("deleted", 0) for k, v in resources.items()},
        "bytes_reclaimed": {
            k: v["bytes_reclaimed"] for k, v in resources.items() if "bytes_reclaimed" in v
        },
        "errors": len(report.get("errors") or []),
    }


async def last_report(session: AsyncSession) -> dict[str, Any] | None:
    """The newest finished run's report (dry or real)."""
    run = await session.scalar(
        select(CleanupRun)
        .where(CleanupRun.status != RUN_RUNNING, CleanupRun.report.is_not(None))
        .order_by(CleanupRun.started_at.desc(), CleanupRun.id.desc())
        .limit(1)
    )
    return run.report if run is not None else None


async def status_view(
    sessions: SessionFactory, settings: Settings, *, policy_rules: int, engines: list[str]
) -> dict[str, Any]:
    """The service's state: mode, retention, limits, the running run and the last report."""
    s = settings
    async with sessions() as session:
        last = await last_report(session)
    return {
        "enabled": s.cleanup_enabled,
        "dry_run": s.cleanup_dry_run,
        "container_cleanup_enabled": s.container_cleanup_enabled,
        "retention_days": s.bot_retention_days,
        "result_retention_days": s.result_retention_days,
        "interval_hours": s.cleanup_interval_hours,
        "grace_minutes": s.container_cleanup_grace_minutes,
        "batch_size": s.cleanup_batch_size,
        "max_deletions": s.cleanup_max_deletions,
        "policy_rules": policy_rules,
        "instance": s.botfleet_instance,
        "engines": engines,
        "running": await running_run_id(sessions),
        "last_run": last,
        "next_run_at": None,
    }


async def runs_page(
    session: AsyncSession, page: PageRequest, *, status: str | None = None
) -> Page[dict[str, Any]]:
    """Newest first, keyset on ``(started_at, id)``."""
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput("status", f"accepts {', '.join(RUN_STATUSES)}; got {status!r}")
    where = [CleanupRun.status == status] if status else []
    total = int(
        await session.scalar(select(func.count()).select_from(CleanupRun).where(*where)) or 0
    )
    stmt = select(CleanupRun).where(*where)
    if page.cursor is not None:
        raw_at, raw_id = decode_cursor(page.cursor, 2)
        try:
            at, key = datetime.fromisoformat(str(raw_at)), uuid.UUID(str(raw_id))
        except ValueError:
            raise InvalidInput("cursor", "is not a cursor this server issued") from None
        stmt = stmt.where(
            or_(
                CleanupRun.started_at < at,
                and_(CleanupRun.started_at == at, CleanupRun.id < key),
            )
        )
    stmt = stmt.order_by(CleanupRun.started_at.desc(), CleanupRun.id.desc())
    if page.offset:
        stmt = stmt.offset(page.offset)
    rows = list((await session.scalars(stmt.limit(page.limit + 1))).all())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = (
        encode_cursor([rows[-1].started_at.isoformat(), str(rows[-1].id)])
        if more and rows
        else None
    )
    return Page([_run_summary(r) for r in rows], total, cursor)


async def run_detail(
    session: AsyncSession, run_id: uuid.UUID, audit: PageRequest
) -> dict[str, Any]:
    """One run: its summary, full report, plan, and a page of its audit trail, one item per
    resource deleted (a batch of bots is read back bot by bot: :mod:`botfleet.cleanup.audit`)."""
    run = await session.get(CleanupRun, run_id)
    if run is None:
        raise RunNotFound(run_id)
    items, total, next_cursor = await _audit_page(session, run_id, audit)
    return {
        **_run_summary(run),
        "report": run.report,
        "plan": run.plan,
        "audit": {"items": items, "total": total, "next_cursor": next_cursor},
    }


async def _audit_page(
    session: AsyncSession, run_id: uuid.UUID, page: PageRequest
) -> tuple[list[dict[str, Any]], int, str | None]:
    """A page of the run's audit items; the cursor is (record id, item index within it).

    Reads the total in SQL, then at most ``limit + 2`` records from where the page starts (each
    holds at least one item), expanded: a run of 400,000 per-bot records (before revision 0004)
    pages as fast as one of 400 batches."""
    after: tuple[int, int] | None = None
    if page.cursor is not None:
        try:
            key = decode_cursor(page.cursor, 2)
        except InvalidInput:
            key = []
        if len(key) != 2 or not all(type(k) is int and k >= 0 for k in key):
            raise InvalidInput("audit_cursor", "is not a cursor this server issued")
        after = (key[0], key[1])
    of_run = CleanupAudit.run_id == run_id
    items_sql = items_of(CleanupAudit.kind, CleanupAudit.resource_count)
    total = int(
        await session.scalar(select(func.coalesce(func.sum(items_sql), 0)).where(of_run)) or 0
    )
    offset = page.offset or 0
    if offset:
        # From the record holding item number ``offset``: items up to and including each record.
        upto = func.sum(items_sql).over(order_by=CleanupAudit.id).label("upto")
        sub = select(CleanupAudit.id, items_sql.label("n"), upto).where(of_run).subquery()
        by_offset = select(sub.c.id, sub.c.n, sub.c.upto).where(sub.c.upto > offset)
        counted = (await session.execute(by_offset.order_by(sub.c.id).limit(page.limit + 2))).all()
        sizes = [(int(r.id), int(r.n)) for r in counted]
        if counted:
            offset -= int(counted[0].upto) - int(counted[0].n)  # the items before the first
    else:
        from_cursor = select(CleanupAudit.id, items_sql.label("n")).where(of_run)
        if after is not None:
            from_cursor = from_cursor.where(CleanupAudit.id >= after[0])
        from_cursor = from_cursor.order_by(CleanupAudit.id).limit(page.limit + 2)
        sizes = [(int(r.id), int(r.n)) for r in await session.execute(from_cursor)]
    slices, more = page_slices(sizes, page.limit, after=after, offset=offset)
    records = {}
    if slices:
        found = await session.scalars(
            select(CleanupAudit).where(CleanupAudit.id.in_([s.record_id for s in slices]))
        )
        records = {a.id: a for a in found}
    items: list[dict[str, Any]] = []
    for s in slices:
        a = records.get(s.record_id)
        if a is None:  # audit records are never deleted; should one go, the page just skips it
            continue
        record = {c: getattr(a, c) for c in ITEM_FIELDS} | {"deleted_at": a.deleted_at.isoformat()}
        items.extend(expand(record)[s.start : s.stop])
    last = slices[-1] if slices else None
    cursor = encode_cursor([last.record_id, last.stop - 1]) if more and last else None
    return items, total, cursor
