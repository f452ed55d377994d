"""Reading bots: one by id, pages of them by filter (newest first, by keyset), and how many
live bots each engine holds (what placement balances)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.constants import STATUS_DELETED
from botfleet.errors import BotNotFound, InvalidInput
from botfleet.pagination import Page, PageRequest, decode_cursor, encode_cursor
from botfleet.store.models import Bot
from botfleet.store.session import SessionFactory


@dataclass(frozen=True)
class BotFilter:
    labels: Mapping[str, str] = field(default_factory=dict)
    status: str | None = None
    # status=deleted lists deleted bots whatever this says.
    include_deleted: bool = False
    # Part of the name, any case (the dashboard's search).
    name_contains: str | None = None


def match_conditions(flt: BotFilter, *, status: bool = True) -> list[Any]:
    """The filter as SQL conditions; ``status=False`` leaves out status and deletion (the
    dashboard counts every status of the bots the labels and the name select)."""
    conditions: list[Any] = []
    if status:
        if not flt.include_deleted and flt.status != STATUS_DELETED:
            conditions.append(Bot.deleted_at.is_(None))
        if flt.status is not None:
            conditions.append(Bot.status == flt.status)
    for key, value in flt.labels.items():
        conditions.append(Bot.labels[key].as_string() == value)
    if flt.name_contains:
        needle = flt.name_contains.lower()
        conditions.append(func.lower(Bot.name).contains(needle, autoescape=True))
    return conditions


async def get_bot(sessions: SessionFactory, bot_id: uuid.UUID) -> Bot:
    async with sessions() as session:
        bot = await session.get(Bot, bot_id)
    if bot is None:
        raise BotNotFound(bot_id)
    return bot


async def list_bots(sessions: SessionFactory, flt: BotFilter, page: PageRequest) -> Page[Bot]:
    """Newest first; ``total`` counts every match, whatever the page."""
    conditions = match_conditions(flt)
    query = (
        select(Bot)
        .where(*conditions)
        .order_by(Bot.created_at.desc(), Bot.id.desc())
        .limit(page.limit + 1)
    )
    if page.cursor is not None:
        created_at, bot_id = _bot_cursor(page.cursor)
        # A row comparison, not an OR of two: one range of ix_bots_created_id.
        query = query.where(tuple_(Bot.created_at, Bot.id) < tuple_(created_at, bot_id))
    if page.offset:
        query = query.offset(page.offset)
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(Bot).where(*conditions))
        rows = list((await session.scalars(query)).all())
    more, rows = len(rows) > page.limit, rows[: page.limit]
    last = rows[-1] if more else None
    cursor = encode_cursor([last.created_at.isoformat(), str(last.id)]) if last else None
    return Page(items=rows, total=int(total or 0), next_cursor=cursor)


async def live_counts(session: AsyncSession) -> dict[str, int]:
    """Live bots per engine: what placement balances."""
    rows = await session.execute(
        select(Bot.engine, func.count())
        .where(Bot.deleted_at.is_(None), Bot.engine.is_not(None))
        .group_by(Bot.engine)
    )
    return {str(engine): int(n) for engine, n in rows.all()}


def _bot_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    created_at, bot_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(str(created_at)), uuid.UUID(str(bot_id))
    except ValueError:
        raise InvalidInput("cursor", "is not a cursor this server issued") from None
