"""What the reconciler reads and writes of the ``bots`` table: snapshots and guarded updates.

A snapshot is read before the engines are listed (:mod:`botfleet.reconcile_plan` decides from
both); every update re-states what the plan saw, so a delete or a restore that came meanwhile
wins over the pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from botfleet.constants import STATUS_DELETED
from botfleet.reconcile_plan import BotView, StatusChange
from botfleet.store.models import Bot
from botfleet.store.session import SessionFactory

VIEW_COLUMNS = (
    Bot.id,
    Bot.status,
    Bot.exit_code,
    Bot.container_id,
    Bot.engine,
    Bot.deleted_at,
    Bot.created_at,
    Bot.node,
    Bot.status_detail,
)


def bot_view(row: Any) -> BotView:
    """A row of :data:`VIEW_COLUMNS` as the plan sees a bot."""
    return BotView(
        id=row.id,
        status=row.status,
        exit_code=row.exit_code,
        container_id=row.container_id,
        engine=row.engine,
        deleted=row.deleted_at is not None,
        created_at=row.created_at,
        node=row.node,
        detail=row.status_detail,
    )


async def unsettled_bots(sessions: SessionFactory) -> list[BotView]:
    """Live bots, and deleted ones whose status does not say so yet."""
    query = select(*VIEW_COLUMNS).where(or_(Bot.deleted_at.is_(None), Bot.status != STATUS_DELETED))
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [bot_view(row) for row in rows]


async def deleted_bots(sessions: SessionFactory, ids: set[uuid.UUID]) -> list[BotView]:
    """Deleted bots that still have an active container somewhere."""
    found: list[BotView] = []
    chunk = sorted(ids)
    async with sessions() as session:
        for i in range(0, len(chunk), 500):
            query = select(*VIEW_COLUMNS).where(
                Bot.id.in_(chunk[i : i + 500]), Bot.deleted_at.is_not(None)
            )
            found += [bot_view(row) for row in (await session.execute(query)).all()]
    return found


async def apply_changes(
    sessions: SessionFactory, changes: Sequence[StatusChange], now: datetime
) -> int:
    """The plan's status changes, each guarded: a delete or restore since the snapshot wins."""
    if not changes:
        return 0
    applied = 0
    async with sessions() as session, session.begin():
        for change in changes:
            # Guarded: a delete or restore since the snapshot wins over this pass.
            alive = Bot.deleted_at.is_not(None) if change.deleted else Bot.deleted_at.is_(None)
            result = await session.execute(
                update(Bot)
                .where(Bot.id == change.bot_id, Bot.status == change.old_status, alive)
                .values(
                    status=change.status,
                    exit_code=change.exit_code,
                    node=change.node,
                    status_detail=change.detail,
                    updated_at=now,
                    **({"status_changed_at": now} if change.status != change.old_status else {}),
                )
            )
            applied += int(getattr(result, "rowcount", 0) or 0)
    return applied


async def is_live(sessions: SessionFactory, bot_id: uuid.UUID) -> bool:
    """The bot's row is there and not deleted."""
    async with sessions() as session:
        row = await session.execute(select(Bot.deleted_at).where(Bot.id == bot_id))
        found = row.first()
    return found is not None and found.deleted_at is None


async def still_deleted(sessions: SessionFactory, bot_id: uuid.UUID) -> bool:
    """The bot's row is there and still deleted (not restored, not purged)."""
    async with sessions() as session:
        deleted_at = await session.scalar(select(Bot.deleted_at).where(Bot.id == bot_id))
    return deleted_at is not None
