"""What a bot's own history records (``bot_events``): each soft delete and each restore.

Written in the transaction that made the change, so an event is there if and only if the change
happened; read back by :mod:`botfleet.bot_history`, purged with the bot.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from botfleet.constants import EVENT_DELETED, EVENT_RESTORED
from botfleet.store.models import BotEvent


def deleted_event(bot_id: uuid.UUID, status: str, now: datetime) -> BotEvent:
    """A soft delete through the API: its outcome is the status the bot had."""
    return BotEvent(
        bot_id=bot_id,
        at=now,
        event=EVENT_DELETED,
        outcome=status,
        detail=f"soft delete ({status}): container stopped",
    )


def restored_event(bot_id: uuid.UUID, now: datetime, *, fresh: bool) -> BotEvent:
    how = "a fresh container" if fresh else "its container started again"
    return BotEvent(bot_id=bot_id, at=now, event=EVENT_RESTORED, detail=f"restored: {how}")
