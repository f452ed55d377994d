"""A bot's row, looked at again right before its container is removed (safety rule 2).

Many removals are in flight at once, each in one of its engine's threads (inspect, bot row,
remove: :meth:`~botfleet.runtime.base.ContainerEngine.remove_verified`). On PostgreSQL their
look-ups are coalesced into few queries (:class:`BotLookup`). On a SQLite file each removal's
thread reads the row itself through a read-only ``sqlite3`` connection (:class:`SqliteBotReader`):
asking the event loop would cost that thread a round trip through the loop, a pooled session and
aiosqlite's own worker thread — most of the client CPU of a removal on two cores
(bench/containers) — and a read of its own, begun after the container's last inspect, is fresher
than a shared query; a swarm's group of services reads its bots' rows in one query after the
group's look (:meth:`SqliteBotReader.read`). WAL mode lets such readers run beside the
writer. An in-memory SQLite database is private to its connection, so it keeps the async path,
as PostgreSQL does (no synchronous driver is installed for it).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, create_engine, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from botfleet.cleanup.batches import Tally
from botfleet.cleanup.eligibility import BotRecord, bot_purge_decision, bot_uuid
from botfleet.cleanup.plan import Selection
from botfleet.cleanup.policy import Policy
from botfleet.store.models import Bot
from botfleet.store.session import SessionFactory


class BotLookup:
    """Look-ups of bot rows by many concurrent removals, coalesced: a request waits for the next
    query that starts after it (so every answer is as fresh as a query of its own), and all
    requests waiting meanwhile share that one query. Removing 300 containers costs a few queries
    instead of 300 sessions (bench/containers). Used on PostgreSQL; a SQLite file is read by
    each removal's own thread instead (:class:`SqliteBotReader`)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self._waiting: dict[str, list[asyncio.Future[BotRecord | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, bot_id: str | None) -> BotRecord | None:
        if not bot_id:
            return None
        future: asyncio.Future[BotRecord | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(bot_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                rows = await bot_records(self.sessions, list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            for bot_id, futures in batch.items():
                for f in futures:
                    if not f.done():
                        f.set_result(rows.get(bot_id))


async def bot_records(sessions: SessionFactory, bot_ids: Collection[str]) -> dict[str, BotRecord]:
    """The rows named by containers' bot-id labels; a label that is no UUID names no row."""
    ids = [key for key in map(bot_uuid, bot_ids) if key is not None]
    out: dict[str, BotRecord] = {}
    async with sessions() as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await session.execute(
                select(Bot.id, Bot.deleted_at, Bot.labels, Bot.status_at_deletion).where(
                    Bot.id.in_(chunk)
                )
            )
            for row in rows:
                out[str(row.id)] = BotRecord.of_row(row)
    return out


BUSY_TIMEOUT_SECONDS = 30.0  # as the server's own connections (store/session.py)

_BY_IDS = select(Bot.id, Bot.deleted_at, Bot.labels, Bot.status_at_deletion).where(
    Bot.id.in_(bindparam("bot_ids", expanding=True))
)


class SqliteBotReader:
    """Read-only connections to the same file, at most one per thread at a time (pooled)."""

    def __init__(self, path: Path, *, threads: int = 64) -> None:
        uri = f"{path.resolve().as_uri()}?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False
            )

        # SQLAlchemy for the column types (ids, UTC datetimes, JSON labels) the store defines.
        # Never a wait for a connection (several engines' threads may read at once): up to
        # ``threads`` are kept, more are opened and closed as needed.
        self._engine: Engine = create_engine(
            "sqlite://", creator=connect, poolclass=QueuePool, pool_size=threads, max_overflow=-1
        )

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> SqliteBotReader | None:
        """A reader of the file ``engine`` uses, or None when it is not a SQLite file."""
        if engine.url.get_backend_name() != "sqlite":
            return None
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return cls(Path(database))

    def get(self, bot_id: str | None) -> BotRecord | None:
        """The bot's row now; None when the label names no row (or is no UUID)."""
        if bot_id is None or bot_uuid(bot_id) is None:
            return None
        return self.read([bot_id]).get(bot_id)

    def read(self, bot_ids: Sequence[str]) -> dict[str, BotRecord]:
        """The rows the labels name, by label, in one query."""
        labels: dict[uuid.UUID, list[str]] = {}
        for label in bot_ids:
            if (key := bot_uuid(label)) is not None:
                labels.setdefault(key, []).append(label)  # two spellings may name one row
        with self._engine.connect() as conn:
            rows = conn.execute(_BY_IDS, {"bot_ids": list(labels)}).all()
        return {label: BotRecord.of_row(row) for row in rows for label in labels[row.id]}

    def close(self) -> None:
        self._engine.dispose()


async def explain_kept_bots(
    sessions: SessionFactory, selection: Selection, tally: Tally, policy: Policy, now: datetime
) -> None:
    """Fewer bots went than were found: name the sampled ones that stayed, and why."""
    if tally.deleted >= selection.found or not selection.sample:
        return
    still = await bot_records(sessions, selection.sample)
    for bot in still.values():
        decision = bot_purge_decision(bot, policy, now)
        reason = "restored" if bot.live else decision.reason
        tally.skipped.append((bot.id, f"changed since selection: {reason}", ""))
    # The rest were not in the sample: counted, not listed.
    tally.unlisted_skips += max(0, selection.found - tally.deleted - len(still))
