"""What a real run tells the receivers (botfleet/notify/), and the outbox's upkeep.

- :func:`purge_warnings`: NOTIFY_BEFORE_PURGE_HOURS — soft-deleted bots that will be due for
  purge within that time (eligible at ``now + lead`` by the very SQL the purge uses, not
  eligible now) get one ``io.botfleet.bot.purge_due`` event each, per deletion: the outbox's
  dedupe key (bot id and deleted_at) makes it once-only.
- :func:`tidy_outbox`: delivered and expired entries go once they are old enough.

A dry run does neither (design.md, safety rule 4); the run's own ``run.finished`` event is
written with its report (:func:`botfleet.cleanup.run_records.finish_run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from botfleet.cleanup.context import RunContext
from botfleet.cleanup.eligibility import BotRecord, bot_purge_decision
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import bot_predicate
from botfleet.cleanup.sql import bound_text
from botfleet.notify.events import Event, purge_due
from botfleet.notify.outbox import KEEP_FINISHED, Notifier, purge_finished, queued_keys
from botfleet.store.models import Bot

WARNINGS_PER_RUN = 1000


async def purge_warnings(ctx: RunContext, policy: Policy, notifier: Notifier, now: datetime) -> int:
    """Queue a warning for each bot due within the lead time and not warned yet; how many."""
    lead = notifier.before_purge
    if lead is None:
        return 0
    later = bot_predicate(ctx.dialect, policy, now + lead)
    sql = (
        f"SELECT b.id, b.name, b.labels, b.deleted_at FROM bots b WHERE {later.eligible}"
        f" ORDER BY b.deleted_at LIMIT {WARNINGS_PER_RUN * 4}"
    )
    columns = [Bot.__table__.c[n] for n in ("id", "name", "labels", "deleted_at")]
    async with ctx.sessions() as session, session.begin():
        rows = (await session.execute(bound_text(sql, later.binds).columns(*columns))).all()
        events = _warnings(rows, policy, notifier, now)
        fresh_keys = set(e.dedupe for e in events) - await queued_keys(
            session, [e.dedupe for e in events]
        )
        fresh = [e for e in events if e.dedupe in fresh_keys][:WARNINGS_PER_RUN]
        await notifier.enqueue(session, fresh, now)
    return len(fresh)


def _warnings(
    rows: Sequence[Any], policy: Policy, notifier: Notifier, now: datetime
) -> list[Event]:
    events = []
    for row in rows:
        bot = BotRecord.of_row(row)
        if bot_purge_decision(bot, policy, now).eligible:
            continue  # due already: this run purges it
        retention = policy.bot_retention(bot.labels)
        if retention.days is None or row.deleted_at is None:
            continue
        events.append(
            purge_due(
                {
                    "id": row.id,
                    "name": row.name,
                    "labels": row.labels,
                    "deleted_at": row.deleted_at,
                },
                due_at=row.deleted_at + timedelta(days=retention.days),
                rule=retention.describe(),
                source=notifier.source,
                link=notifier.link(f"/bots/{row.id}/restore"),
                time=now,
            )
        )
    return events


async def tidy_outbox(ctx: RunContext, now: datetime, lead: timedelta | None) -> int:
    """Delivered and expired entries older than a week (or than the warning lead, if longer:
    a purge warning's once-only key lives in its entry)."""
    keep = max(KEEP_FINISHED, (lead or timedelta()) + timedelta(days=1))
    async with ctx.sessions() as session, session.begin():
        return await purge_finished(session, now, keep)
