"""One cleanup at a time across every replica that shares the database (safety rule 5).

PostgreSQL: a session advisory lock, taken with ``pg_try_advisory_lock`` on a connection of its
own (never the pool's: a pooled connection could be reset or handed to someone else while the lock
lives on it). If that session dies the lock is gone with it, so the executor asks
:meth:`CleanupLock.still_held` before every batch and stops on :class:`~botfleet.errors.LockLost`.
SQLite: ``flock`` on a file next to the database; released by the kernel if the process dies.
See https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from typing import Any, Protocol

from botfleet.config import Settings
from botfleet.constants import CLEANUP_LOCK_KEY

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 5.0


class CleanupLock(Protocol):
    async def acquire(self) -> bool:
        """Take the lock without waiting; False if someone else holds it."""

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


class PostgresLock:
    """A session advisory lock on a dedicated asyncpg connection."""

    def __init__(self, url: str, key: int = CLEANUP_LOCK_KEY, timeout: float = 10.0) -> None:
        self._url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._key = key
        self._timeout = timeout
        self._conn: Any = None
        # asyncpg runs one query at a time per connection; concurrent checks must queue.
        self._guard = asyncio.Lock()

    async def acquire(self) -> bool:
        import asyncpg

        conn = await asyncpg.connect(
            self._url,
            timeout=self._timeout,
            server_settings={"application_name": "botfleet-cleanup-lock"},
        )
        try:
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key))
        except BaseException:
            await _close(conn)
            raise
        if not got:
            await _close(conn)
            return False
        self._conn = conn
        return True

    async def still_held(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        async with self._guard:
            try:
                # A session-level advisory lock lasts as long as the session that took it (only
                # this object unlocks it): a session that still answers still holds it. Asked
                # before every batch, so it is one round trip, not a read of pg_locks, whose
                # cost grows with every lock the server holds (bench/quota).
                return bool(await conn.fetchval("SELECT true", timeout=CHECK_TIMEOUT_SECONDS))
            except Exception as exc:
                log.warning("cleanup lock check failed: %s: %s", type(exc).__name__, exc)
                return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        async with self._guard:
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock($1)", self._key)
            await _close(conn)


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:
        conn.terminate()


class FileLock:
    """``flock`` on ``<database>.cleanup.lock``: per open file, so it excludes this process too."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    async def still_held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def lock_for(
    settings: Settings, *, key: int = CLEANUP_LOCK_KEY, name: str = "cleanup"
) -> CleanupLock:
    """The lock that fits ``DATABASE_URL``: advisory on PostgreSQL, a file lock on SQLite.
    ``key``/``name``: another lock of the same kind (the notification sender's)."""
    path = settings.sqlite_path
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(f"{path}.{name}.lock")
    return PostgresLock(settings.database_url, key=key)
