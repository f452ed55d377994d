"""A run's row in ``cleanup_runs``: recorded once the run holds the lock, finished with its report
and plan, marked abandoned when its process died; and a dry run's stored plan, loaded by id."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.cleanup.context import RunRequest
from botfleet.cleanup.plan import Plan
from botfleet.constants import RUN_ABANDONED, RUN_RUNNING
from botfleet.errors import InvalidInput, PlanNotFound
from botfleet.store.models import CleanupRun
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)


async def record_run(sessions: SessionFactory, request: RunRequest, owner: str) -> None:
    async with sessions() as session, session.begin():
        session.add(
            CleanupRun(
                id=request.run_id,
                trigger=request.trigger,
                actor=request.actor[:200],
                dry_run=request.dry_run,
                status=RUN_RUNNING,
                started_at=request.started,
                owner=owner,
            )
        )


async def finish_run(
    sessions: SessionFactory,
    run_id: uuid.UUID,
    report: dict[str, Any],
    plan: Plan | None,
    notify: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> None:
    """The report stored; ``notify`` writes the run's event in the same transaction (it is
    sent exactly when the report is stored)."""
    async with sessions() as session, session.begin():
        if notify is not None:
            await notify(session)
        await session.execute(
            update(CleanupRun)
            .where(CleanupRun.id == run_id)
            .values(
                status=report["status"],
                finished_at=datetime.fromisoformat(report["finished_at"]),
                report=report,
                plan=plan.to_json() if plan else None,
            )
        )


async def store_plan(sessions: SessionFactory, run_id: uuid.UUID, plan: Plan) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(CleanupRun).where(CleanupRun.id == run_id).values(plan=plan.to_json())
        )


async def abandon_stale(sessions: SessionFactory, now: datetime) -> int:
    """Rows left ``running`` become ``abandoned``: call it only while holding the cleanup lock,
    when no run of another process can be running."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(CleanupRun)
            .where(CleanupRun.status == RUN_RUNNING)
            .values(status=RUN_ABANDONED, finished_at=now)
            .returning(CleanupRun.id, CleanupRun.owner)
        )
        stale = result.all()
    for run_id, owner in stale:
        log.warning("cleanup run %s (owner %s) was left running; marked abandoned", run_id, owner)
    return len(stale)


async def running_run_id(sessions: SessionFactory) -> str | None:
    async with sessions() as session:
        run_id = await session.scalar(
            select(CleanupRun.id)
            .where(CleanupRun.status == RUN_RUNNING)
            .order_by(CleanupRun.started_at.desc())
            .limit(1)
        )
    return str(run_id) if run_id else None


async def load_plan(sessions: SessionFactory, plan_id: str | uuid.UUID, instance: str) -> Plan:
    """A stored dry run's plan, to be applied; refused if it is not one of this instance."""
    try:
        key = plan_id if isinstance(plan_id, uuid.UUID) else uuid.UUID(str(plan_id))
    except ValueError:
        raise InvalidInput(
            "plan_id", f"accepts a run id (UUID); got {str(plan_id)[:60]!r}"
        ) from None
    async with sessions() as session:
        row = await session.get(CleanupRun, key)
    if row is None or not row.dry_run or not row.plan:
        raise PlanNotFound(plan_id)
    plan = Plan.from_json(row.plan)
    if plan.instance != instance:
        raise InvalidInput(
            "plan_id",
            f"plan {plan_id} was made for instance {plan.instance!r}, this is {instance!r}",
        )
    return plan
