"""The facts :func:`botfleet.cleanup.explain.explain` reads of one bot: its row and a summary of
its results (``ix_results_bot_recent``: count, oldest, newest)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from botfleet.cleanup.eligibility import labels_of
from botfleet.cleanup.explain import BotFacts
from botfleet.errors import BotNotFound
from botfleet.store.models import Bot, Result
from botfleet.store.session import SessionFactory


async def read_facts(sessions: SessionFactory, bot_id: uuid.UUID) -> BotFacts:
    """:class:`BotNotFound` when no row has that id (purged, or never was)."""
    async with sessions() as session:
        bot = await session.get(Bot, bot_id)
        if bot is None:
            raise BotNotFound(bot_id)
        count, oldest, newest = (
            await session.execute(
                select(func.count(), func.min(Result.created_at), func.max(Result.created_at))
                .select_from(Result)
                .where(Result.bot_id == bot_id)
            )
        ).one()
    return BotFacts(
        id=str(bot.id),
        name=bot.name,
        labels=labels_of(bot.labels),
        status=bot.status,
        created_at=bot.created_at,
        deleted_at=bot.deleted_at,
        status_at_deletion=bot.status_at_deletion,
        status_changed_at=bot.status_changed_at,
        results=int(count or 0),
        oldest_result_at=_utc(oldest),
        last_result_at=_utc(newest),
    )


def _utc(value: datetime | str | None) -> datetime | None:
    """min/max over a UTC column: SQLite may answer text or a naive datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
