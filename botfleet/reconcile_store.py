"""What the reconciler reads and writes of the ``bots`` table: snapshots and guarded updates.

A snapshot is read before the engines are listed (:mod:`botfleet.reconcile_plan` decides from
both); every update re-states what the plan saw, so a delete or a restore that came meanwhile
wins over the pass.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update

from botfleet.constants import STATUS_DELETED, STATUS_PENDING
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


# The bots a pass judges: deleted ones whose status does not say so yet, and live ones with a
# workload to compare or a create that may have been abandoned (pending). A live bot with no
# workload that is not pending is one the plan leaves alone (reconcile_plan.plan_reconcile).
JUDGED = or_(
    and_(Bot.deleted_at.is_not(None), Bot.status != STATUS_DELETED),
    and_(
        Bot.deleted_at.is_(None),
        or_(Bot.container_id.is_not(None), Bot.status == STATUS_PENDING),
    ),
)


class BotPages:
    """The bots a pass judges, a page at a time from one cursor (one snapshot)."""

    def __init__(self, partitions: AsyncIterator[Sequence[Any]]) -> None:
        self._partitions = partitions

    async def next(self) -> list[BotView]:
        """The next page; empty when the cursor is done."""
        return [bot_view(row) for row in await anext(self._partitions, [])]


@contextlib.asynccontextmanager
async def judged_bots(sessions: SessionFactory, page_rows: int) -> AsyncIterator[BotPages]:
    """A cursor over :data:`JUDGED`, open while the pass reads it: its snapshot is taken by the
    first page, so read that before listing the engines."""
    async with sessions() as session:
        query = select(*VIEW_COLUMNS).where(JUDGED).execution_options(yield_per=page_rows)
        result = await session.stream(query)
        yield BotPages(result.partitions(page_rows))


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
