"""A bot's history as the dashboard shows it: created; each soft delete and restore; the cleanup
runs whose stored plan included it; and what runs removed of its workload.

Deletes and restores come from ``bot_events``, written in the transaction that made them (an
API delete or restore, an idle rule's soft delete): the row keeps only its latest
``deleted_at``, which a restore clears. A delete from before those records (revision 0008) is
still shown, from the row. Removed containers and services come from the audit trail.

Which runs planned it. A stored plan names workloads (a container or service with its bot's
id), but it selects the bots to purge by a condition — its ``now`` and its policy — not by
name. Only a soft-deleted bot can be either (a live bot's workload is never a target, and the
purge takes only deleted bots); and while a bot stays deleted, all that the condition reads of
it (``deleted_at``, its labels, the status it ended with) stays as it was. So each plan made
during one of its deletions is judged again, exactly, by the pure
:func:`~botfleet.cleanup.eligibility.bot_purge_decision`, and its targets are read for the
bot's id: the plans come through ``ix_cleanup_runs_started_at``, at most
``PLANS_PER_DELETION`` (the latest) per deletion, and nothing is written per planned bot when a
run plans a hundred thousand. An idle rule's plan is not judged again (it read the bot's results
as they were then); the soft delete it made is among the deletes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.bot_queries import get_bot
from botfleet.cleanup.eligibility import BotRecord, bot_purge_decision, labels_of
from botfleet.cleanup.plan import Plan
from botfleet.constants import (
    EVENT_CONTAINER_REMOVED,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_PLANNED,
    EVENT_RESTORED,
    KIND_BOTS,
    KIND_CONTAINERS,
    KIND_SERVICES,
    WORKLOAD_KINDS,
)
from botfleet.store.models import Bot, BotEvent, CleanupAudit, CleanupRun
from botfleet.store.session import SessionFactory

# Plans judged per deletion of the bot, the latest first: a scheduled run every few hours
# makes a few dozen in a retention period.
PLANS_PER_DELETION = 100


@dataclass(frozen=True)
class HistoryEvent:
    at: datetime
    event: str  # constants.HISTORY_EVENTS
    detail: str
    run_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Deletion:
    """One time the bot was soft-deleted: from ``since`` until its restore (None: still)."""

    since: datetime
    until: datetime | None
    outcome: str | None  # the status it ended with


async def bot_history(
    sessions: SessionFactory, bot_id: uuid.UUID, *, instance: str | None = None
) -> list[HistoryEvent]:
    """Oldest first; :class:`~botfleet.errors.BotNotFound` once the bot is purged.
    ``instance``: only plans made for this ``BOTFLEET_INSTANCE`` (None: every one)."""
    bot = await get_bot(sessions, bot_id)
    where = f" on {bot.engine}" if bot.engine else ""
    events = [HistoryEvent(bot.created_at, EVENT_CREATED, f"image {bot.image}{where}")]
    async with sessions() as session:
        recorded = list(
            await session.scalars(
                select(BotEvent).where(BotEvent.bot_id == bot_id).order_by(BotEvent.at)
            )
        )
        events += [HistoryEvent(e.at, e.event, e.detail, e.run_id) for e in recorded]
        if bot.deleted_at is not None and bot.deleted_at not in {e.at for e in recorded}:
            events.append(HistoryEvent(bot.deleted_at, EVENT_DELETED, "soft delete"))
        deletions = deletion_periods(recorded, bot.deleted_at, bot.status_at_deletion)
        for deletion in deletions:
            runs = await _runs_during(session, deletion)
            events += planned(bot, deletion, runs, instance)
        if bot.container_id:
            events += await _removals(session, bot.container_id)
    return sorted(events, key=lambda e: e.at)


def deletion_periods(
    recorded: Iterable[BotEvent], deleted_at: datetime | None, outcome: str | None
) -> list[Deletion]:
    """The bot's deletions from its events (oldest first), the current one from its row."""
    periods: list[Deletion] = []
    current: Deletion | None = None
    for event in recorded:
        if event.event == EVENT_DELETED:
            current = Deletion(event.at, None, event.outcome)
        elif event.event == EVENT_RESTORED and current is not None:
            periods.append(Deletion(current.since, event.at, current.outcome))
            current = None
    if deleted_at is not None:
        periods.append(Deletion(deleted_at, None, outcome))
    return periods


def planned(
    bot: Bot, deletion: Deletion, runs: Iterable[Any], instance: str | None
) -> list[HistoryEvent]:
    """The runs (``id``, ``dry_run``, ``started_at``, ``plan``) whose plan included the bot
    while it was deleted: its purge, or its workload's removal. Pure."""
    record = BotRecord(str(bot.id), deletion.since, labels_of(bot.labels), deletion.outcome)
    found: list[HistoryEvent] = []
    for run in runs:
        if not run.plan:
            continue
        plan = Plan.from_json(run.plan)
        if instance is not None and plan.instance != instance:
            continue
        what = "dry run" if run.dry_run else "run"
        if KIND_BOTS in plan.stages:
            decision = bot_purge_decision(record, plan.policy, plan.now)
            if decision.eligible:
                detail = f"{what}: purge of the bot ({decision.reason})"
                found.append(HistoryEvent(run.started_at, EVENT_PLANNED, detail, run.id))
        for kind in WORKLOAD_KINDS:
            for target in plan.scope(kind).targets:
                if target.bot_id == str(bot.id):
                    detail = f"{what}: removal of {kind} {target.id[:12]} ({target.reason})"
                    found.append(HistoryEvent(run.started_at, EVENT_PLANNED, detail, run.id))
    return found


async def _runs_during(session: AsyncSession, deletion: Deletion) -> Sequence[Any]:
    query = select(CleanupRun.id, CleanupRun.dry_run, CleanupRun.started_at, CleanupRun.plan).where(
        CleanupRun.started_at >= deletion.since, CleanupRun.plan.is_not(None)
    )
    if deletion.until is not None:
        query = query.where(CleanupRun.started_at < deletion.until)
    query = query.order_by(CleanupRun.started_at.desc()).limit(PLANS_PER_DELETION)
    return (await session.execute(query)).all()


async def _removals(session: AsyncSession, container_id: str) -> list[HistoryEvent]:
    """What runs removed of its workload (ix_cleanup_audit_resource_id)."""
    records = await session.scalars(
        select(CleanupAudit)
        .where(
            CleanupAudit.resource_id == container_id,
            CleanupAudit.kind.in_((KIND_CONTAINERS, KIND_SERVICES)),
        )
        .order_by(CleanupAudit.id)
    )
    return [
        HistoryEvent(r.deleted_at, EVENT_CONTAINER_REMOVED, f"{r.reason} (by {r.actor})", r.run_id)
        for r in records
    ]
