"""The fleet at a glance: a page of bots with what the dashboard shows beside each (its last
result, its results in the last hour) and how many bots there are per status.

One page costs the same wherever it is: keyset paging on (created_at, id), newest first, and
the per-bot figures read for the page's bots only, through ``ix_results_bot_id`` (BENCHMARKS.md,
"Fleet page"). ``now`` is an input, as everywhere a time is judged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.bot_queries import BotFilter, list_bots, match_conditions
from botfleet.constants import BOT_STATUSES
from botfleet.pagination import PageRequest
from botfleet.store.models import Bot, Result
from botfleet.store.session import SessionFactory

RECENT = timedelta(hours=1)


@dataclass(frozen=True)
class FleetRow:
    bot: Bot
    last_result_at: datetime | None
    results_last_hour: int


@dataclass(frozen=True)
class FleetPage:
    rows: list[FleetRow]
    total: int
    next_cursor: str | None
    counts: dict[str, int]


async def fleet_page(
    sessions: SessionFactory, flt: BotFilter, page: PageRequest, *, now: datetime
) -> FleetPage:
    """The page of bots ``flt`` selects, with their figures, and the count per status of the
    bots the filter's labels and name select (whatever its status)."""
    found = await list_bots(sessions, flt, page)
    ids = [bot.id for bot in found.items]
    async with sessions() as session:
        figures = await _figures(session, ids, now) if ids else {}
        by_status = await session.execute(
            select(Bot.status, func.count())
            .where(*match_conditions(flt, status=False))
            .group_by(Bot.status)
        )
        counts = dict.fromkeys(BOT_STATUSES, 0) | {str(s): int(n) for s, n in by_status.all()}
    rows = [FleetRow(bot, *figures.get(bot.id, (None, 0))) for bot in found.items]
    return FleetPage(rows=rows, total=found.total, next_cursor=found.next_cursor, counts=counts)


async def _figures(
    session: AsyncSession, ids: list[uuid.UUID], now: datetime
) -> dict[uuid.UUID, tuple[datetime | None, int]]:
    recent = func.count().filter(Result.created_at >= now - RECENT)
    rows = await session.execute(
        select(Result.bot_id, func.max(Result.created_at), recent)
        .where(Result.bot_id.in_(ids))
        .group_by(Result.bot_id)
    )
    return {bot_id: (last, int(n)) for bot_id, last, n in rows.all()}
