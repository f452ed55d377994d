"""Bot rows read synchronously from the embedded SQLite file, by a thread that needs one now.

Why: a container's removal is checked in one of its engine's threads (inspect, bot row, remove;
``DockerEngine.remove_verified``). Asking the event loop for the row costs that thread a round
trip through the loop, a pooled session and aiosqlite's own worker thread — most of the client
CPU of a removal on two cores (bench/containers). A read-only ``sqlite3`` connection answers in
the removal's own thread, and every answer is a read of its own, begun after the container's last
inspect: fresher than a shared query. WAL mode lets such readers run beside the writer.

Only for a database file: an in-memory SQLite database is private to its connection, and
PostgreSQL keeps the async path (no synchronous driver is installed for it).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, bindparam, create_engine, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from botfleet.cleanup.eligibility import BotRecord, bot_uuid
from botfleet.store.models import Bot

BUSY_TIMEOUT_SECONDS = 30.0  # as the server's own connections (store/session.py)

_BY_ID = select(Bot.id, Bot.deleted_at, Bot.labels).where(Bot.id == bindparam("bot_id"))


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
    def for_engine(cls, engine: AsyncEngine | None) -> SqliteBotReader | None:
        """A reader of the file ``engine`` uses, or None when it is not a SQLite file."""
        if engine is None or engine.url.get_backend_name() != "sqlite":
            return None
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return cls(Path(database))

    def get(self, bot_id: str | None) -> BotRecord | None:
        """The bot's row now; None when the label names no row (or is no UUID)."""
        key = bot_uuid(bot_id)
        if key is None:
            return None
        with self._engine.connect() as conn:
            row = conn.execute(_BY_ID, {"bot_id": key}).first()
        return None if row is None else BotRecord.of_row(row)

    def close(self) -> None:
        self._engine.dispose()
