"""The async engine and session factory, built from settings (never at import time)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from botfleet.config import Settings

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``DATABASE_URL``: asyncpg for PostgreSQL, aiosqlite for SQLite."""
    if settings.is_sqlite:
        path = settings.sqlite_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            settings.async_database_url,
            connect_args={"timeout": 30},
            **kwargs,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    # Named sessions make pg_stat_activity and pg_locks readable for operators (and `doctor`).
    kwargs.setdefault("connect_args", {"server_settings": {"application_name": "botfleet"}})
    return create_async_engine(settings.async_database_url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)
