"""What waits for the cleanup right now: bots by status, orphans and backlog per kind.

One measurement feeds the metrics collector, the dashboard and ``botfleet doctor`` so that they
tell the same story. It costs a handful of indexed SQL counts and one container listing per
engine; the metrics take it in the background (:mod:`botfleet.metrics.snapshot`), never in a
scrape.

Database counts re-use the cleanup's own SQL predicates (retention, policy rules, legal hold), so
they match what a plan would select. Containers are judged on the engines' listings alone (their
creation time, where the planner inspects each stopped one for its exit time), so the container
backlog can run slightly ahead of a dry run's ``found``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.cleanup.eligibility import labels_of
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect, bot_predicate, result_eligible
from botfleet.cleanup.result_slices import sliced_count
from botfleet.cleanup.sql import bound_text, scalar
from botfleet.config import Settings
from botfleet.constants import (
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    REMOVABLE_STATES,
    RUN_ABANDONED,
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    WORKLOAD_KINDS,
)
from botfleet.errors import EngineUnavailable
from botfleet.runtime.base import ContainerInfo
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot, CleanupRun, UTCDateTime
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

ORPHAN_KINDS = (KIND_ORPHANED_RESULTS, *WORKLOAD_KINDS)
BACKLOG_KINDS = (KIND_BOTS, KIND_BOT_RESULTS, KIND_ORPHANED_RESULTS, KIND_RESULTS, *WORKLOAD_KINDS)
_FAILURES = (RUN_FAILED, RUN_ABANDONED)
_HISTORY = 100  # runs looked at to count consecutive failures


@dataclass(frozen=True)
class Backlog:
    measured_at: datetime
    bots: dict[str, int] = field(default_factory=dict)
    orphaned: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    # Per kind: how long the oldest eligible item has waited past its eligibility.
    oldest_age_seconds: dict[str, float] = field(default_factory=dict)
    # Keyed by dry_run: when the last succeeded run finished.
    last_success: dict[bool, datetime] = field(default_factory=dict)
    consecutive_failures: int = 0
    engine_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ContainerCounts:
    orphaned: int
    removable: int


def classify_containers(
    containers: Iterable[ContainerInfo],
    live_bot_ids: set[str],
    *,
    instance: str,
    grace: timedelta,
    now: datetime,
) -> ContainerCounts:
    """Orphaned: ours, and no live bot owns it. Removable: orphaned, stopped and past the grace."""
    orphaned = removable = 0
    for c in containers:
        if not c.belongs_to(instance) or c.swarm_task or normalise_id(c.bot_id) in live_bot_ids:
            continue
        orphaned += 1
        since = c.finished_at or c.created_at
        if c.state in REMOVABLE_STATES and since is not None and now - since >= grace:
            removable += 1
    return ContainerCounts(orphaned, removable)


def normalise_id(raw: str | None) -> str | None:
    """A bot id label in the canonical form of ``str(uuid)``, or None if it is no bot id."""
    try:
        return str(uuid.UUID(raw or ""))
    except ValueError:
        return None


def leading_failures(statuses: Sequence[str]) -> int:
    """How many of the newest finished runs (newest first) failed in a row."""
    count = 0
    for status in statuses:
        if status not in _FAILURES:
            break
        count += 1
    return count


async def measure(
    sessions: SessionFactory, fleet: Fleet | None, settings: Settings, *, now: datetime
) -> Backlog:
    """Count what waits for the cleanup at ``now``; an unreachable engine is reported, not fatal."""
    async with sessions() as session:
        bots = await _bots_by_status(session)
        backlog, oldest = await _db_backlog(session, settings, now)
        orphaned = {KIND_ORPHANED_RESULTS: backlog[KIND_ORPHANED_RESULTS]}
        last_success = await _last_success(session)
        failures = await _consecutive_failures(session)
        errors: list[str] = []
        for kind in WORKLOAD_KINDS:  # containers on plain engines, services on a swarm
            orphaned[kind] = backlog[kind] = 0
        if fleet is not None and settings.container_cleanup_enabled:
            containers, errors = await _list_containers(fleet, settings.botfleet_instance)
            live = await _live_ids(session, {c.bot_id for c in containers if c.bot_id})
            for kind, engines in ((k, fleet.of_kind(k)) for k in WORKLOAD_KINDS):
                counts = classify_containers(
                    [c for c in containers if c.engine in engines],
                    live,
                    instance=settings.botfleet_instance,
                    grace=timedelta(minutes=settings.container_cleanup_grace_minutes),
                    now=now,
                )
                orphaned[kind], backlog[kind] = counts.orphaned, counts.removable
    return Backlog(
        measured_at=now,
        bots=bots,
        orphaned=orphaned,
        backlog=backlog,
        oldest_age_seconds=oldest,
        last_success=last_success,
        consecutive_failures=failures,
        engine_errors=errors,
    )


async def _bots_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Bot.status, func.count()).group_by(Bot.status))
    return {str(status): int(n) for status, n in rows.all()}


async def _db_backlog(
    session: AsyncSession, settings: Settings, now: datetime
) -> tuple[dict[str, int], dict[str, float]]:
    """Counts with the cleanup's own SQL predicates, so holds and policy rules agree with a plan."""
    policy = Policy.from_settings(settings)
    dialect = Dialect(postgres=not settings.is_sqlite)
    p = bot_predicate(dialect, policy, now)
    # ix_bots_deleted_at bounds the first two; ix_results_bot_id serves the joins.
    n_bots = await scalar(session, f"SELECT count(*) FROM bots b WHERE {p.eligible}", p.binds)
    if dialect.postgres:
        # As the plan counts them: slice by slice of bot ids, each a short transaction of its
        # own (cleanup/result_slices.py), not one pass over every result in one transaction.
        n_bot_results = await sliced_count(
            session,
            f"SELECT count(*) FROM results r JOIN bots b ON b.id = r.bot_id"
            f" WHERE {{r}} AND {{b}} AND {p.eligible}",
            p.binds,
        )
        n_orphans = await sliced_count(
            session,
            "SELECT count(*) FROM results r WHERE {r}"
            " AND NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id AND {b})",
            [],
        )
    else:
        n_bot_results = await scalar(
            session,
            f"SELECT count(*) FROM results r WHERE r.bot_id IN"
            f" (SELECT b.id FROM bots b WHERE {p.eligible})",
            p.binds,
        )
        n_orphans = await scalar(
            session,
            "SELECT count(*) FROM results r"
            " WHERE NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id)",
        )
    frag = result_eligible(dialect, policy, now)
    n_results = await scalar(
        session,
        f"SELECT count(*) FROM results r JOIN bots b ON b.id = r.bot_id WHERE {frag.sql}",
        frag.binds,
    )
    backlog = {
        KIND_BOTS: n_bots,
        KIND_BOT_RESULTS: n_bot_results,
        KIND_ORPHANED_RESULTS: n_orphans,
        KIND_RESULTS: n_results,
    }
    oldest: dict[str, float] = {kind: 0.0 for kind in BACKLOG_KINDS}
    if n_bots:
        # The oldest few by deleted_at: per-rule retentions decide which has waited longest.
        rows = await session.execute(
            bound_text(
                f"SELECT b.deleted_at, b.labels, b.status_at_deletion FROM bots b"
                f" WHERE {p.eligible} ORDER BY b.deleted_at LIMIT 50",
                p.binds,
            ).columns(deleted_at=UTCDateTime(), labels=Bot.__table__.c.labels.type)
        )
        waits = [
            (now - deleted - timedelta(days=days)).total_seconds()
            for deleted, labels, outcome in rows.all()
            if (days := policy.bot_retention(labels_of(labels), outcome).days) is not None
        ]
        oldest[KIND_BOTS] = oldest[KIND_BOT_RESULTS] = max([0.0, *waits])
    if n_results and policy.result_retention_days is not None:
        first = await session.execute(
            bound_text(
                f"SELECT min(r.created_at) FROM results r JOIN bots b ON b.id = r.bot_id"
                f" WHERE {frag.sql}",
                frag.binds,
            ).columns(created_at=UTCDateTime())
        )
        created = first.scalar()
        if created is not None:
            keep = timedelta(days=policy.result_retention_days)
            oldest[KIND_RESULTS] = max(0.0, (now - _as_utc(created) - keep).total_seconds())
    return backlog, oldest


async def _last_success(session: AsyncSession) -> dict[bool, datetime]:
    rows = await session.execute(
        select(CleanupRun.dry_run, func.max(CleanupRun.finished_at))
        .where(CleanupRun.status == RUN_SUCCEEDED)
        .group_by(CleanupRun.dry_run)
    )
    out: dict[bool, datetime] = {}
    for dry_run, finished in rows.all():
        if finished is not None:
            # max() over SQLite text loses the type decorator: parse it back to aware UTC.
            out[bool(dry_run)] = _as_utc(finished)
    return out


async def _consecutive_failures(session: AsyncSession) -> int:
    rows = await session.scalars(
        select(CleanupRun.status)
        .where(CleanupRun.status != RUN_RUNNING)
        .order_by(CleanupRun.started_at.desc())
        .limit(_HISTORY)
    )
    return leading_failures(list(rows))


async def _list_containers(fleet: Fleet, instance: str) -> tuple[list[ContainerInfo], list[str]]:
    async def one(name: str) -> list[ContainerInfo] | str:
        try:
            async with asyncio.timeout(10):
                return await fleet.engines[name].list_managed(instance)
        except (EngineUnavailable, TimeoutError) as exc:
            return f"{name}: {exc or 'timeout'}"

    answers = await asyncio.gather(*(one(name) for name in fleet.names))
    found: list[ContainerInfo] = []
    errors: list[str] = []
    for answer in answers:
        if isinstance(answer, str):
            errors.append(answer)
        else:
            found.extend(answer)
    return found, errors


async def _live_ids(session: AsyncSession, bot_ids: set[str]) -> set[str]:
    # A label that is no bot id names no live bot: nobody owns that container.
    wanted = [uuid.UUID(i) for i in filter(None, map(normalise_id, bot_ids))]
    live: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = await session.scalars(
            select(Bot.id).where(Bot.id.in_(chunk), Bot.deleted_at.is_(None))
        )
        live.update(str(i) for i in rows)
    return live


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
