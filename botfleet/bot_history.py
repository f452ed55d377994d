"""A bot's history as the dashboard shows it: created, deleted, and what cleanup runs did to
its workload (the audit trail's record of a container or service it removed, with the run)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from botfleet.bot_queries import get_bot
from botfleet.constants import KIND_CONTAINERS, KIND_SERVICES
from botfleet.store.models import CleanupAudit
from botfleet.store.session import SessionFactory


@dataclass(frozen=True)
class HistoryEvent:
    at: datetime
    event: str  # created | deleted | container_removed
    detail: str
    run_id: uuid.UUID | None = None


async def bot_history(sessions: SessionFactory, bot_id: uuid.UUID) -> list[HistoryEvent]:
    """Oldest first; :class:`~botfleet.errors.BotNotFound` once the bot is purged."""
    bot = await get_bot(sessions, bot_id)
    where = f" on {bot.engine}" if bot.engine else ""
    events = [HistoryEvent(bot.created_at, "created", f"image {bot.image}{where}")]
    if bot.deleted_at is not None:
        events.append(HistoryEvent(bot.deleted_at, "deleted", "soft delete: container stopped"))
    if bot.container_id:
        async with sessions() as session:
            records = await session.scalars(
                select(CleanupAudit)
                .where(
                    CleanupAudit.resource_id == bot.container_id,
                    CleanupAudit.kind.in_((KIND_CONTAINERS, KIND_SERVICES)),
                )
                .order_by(CleanupAudit.id)
            )
            for record in records:
                events.append(
                    HistoryEvent(
                        record.deleted_at,
                        "container_removed",
                        f"{record.reason} (by {record.actor})",
                        record.run_id,
                    )
                )
    return sorted(events, key=lambda e: e.at)
