"""A PostgreSQL server tuned for a benchmark, and put back as it was afterwards.

Only settings that a reload applies (``ALTER SYSTEM`` + ``pg_reload_conf()``): the server is
shared with other work — test suites run against it at the same time — so it is never restarted,
and ``shared_buffers`` or ``wal_buffers``, which need a restart, stay as they are.

What ``postgresql.auto.conf`` held for each setting before is read back from
``pg_file_settings`` and restored exactly (``ALTER SYSTEM SET`` the old value, or ``RESET`` when
there was none) in a ``finally``; a SIGTERM is turned into an exception so that it runs then too.
Two benchmarks tuning one server at the same time would restore each other's values (one run
here did: it read the other's tuned values as "before" and put them back after the other had
restored the server). So every block — stock or tuned — holds a session advisory lock of its own
on the server (``TUNING_LOCK_KEY``) for as long as it runs: a second benchmark, from this process
or from another checkout, waits for the first to restore the server before it reads "before".
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import asyncpg

# What a tuned server sets for a write-heavy purge: WAL may grow to 16 GB between checkpoints and
# a checkpoint comes at most every 30 min — the settings whose lack, at stock values, made the
# WAL and its checkpoints set the pace of a bulk DELETE (issue 17).
TUNED: dict[str, str] = {
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "checkpoint_completion_target": "0.9",
}
STOCK: dict[str, str] = {}  # the server as it is configured
SERVERS: dict[str, dict[str, str]] = {"stock": STOCK, "tuned": TUNED}
TUNING_LOCK_KEY = 0x62656E6368_17  # "bench", issue 17: any benchmark that sets server settings
LOCK_WAIT_SECONDS = 3600.0


class _TuningLock:
    """The session advisory lock ``TUNING_LOCK_KEY``, on a connection of its own that an event
    loop in a thread of its own keeps open while the (synchronous) block runs; the server
    releases it if this process dies."""

    def __init__(self, admin_url: str) -> None:
        self._url = admin_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._conn: Any = None

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> _TuningLock:
        self._thread.start()
        try:
            self._conn = self._run(
                asyncpg.connect(
                    self._url, server_settings={"application_name": "bench-server-settings"}
                )
            )
            if not self._run(
                self._conn.fetchval("SELECT pg_try_advisory_lock($1)", TUNING_LOCK_KEY)
            ):
                print(
                    "waiting for another benchmark to put the server's settings back …", flush=True
                )
                self._run(
                    self._conn.execute("SELECT pg_advisory_lock($1)", TUNING_LOCK_KEY),
                    LOCK_WAIT_SECONDS,
                )
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._run(self._conn.close())  # ends the session: the lock goes with it
            self._conn = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _auto_conf(conn: asyncpg.Connection, names: list[str]) -> dict[str, str | None]:
    rows = await conn.fetch(
        """SELECT name, setting FROM pg_file_settings
           WHERE sourcefile LIKE '%postgresql.auto.conf' AND name = ANY($1::text[])
           ORDER BY seqno""",
        names,
    )
    held: dict[str, str | None] = dict.fromkeys(names)
    for row in rows:  # the last line for a name is the one in force
        held[row["name"]] = row["setting"]
    return held


async def _apply(conn: asyncpg.Connection, values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            await conn.execute(f"ALTER SYSTEM RESET {name}")
        else:
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    await conn.execute("SELECT pg_reload_conf()")


async def current(url: str, names: list[str]) -> dict[str, str]:
    """What a new session sees: each setting as ``SHOW`` prints it."""
    conn = await asyncpg.connect(url)
    try:
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await conn.close()


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def server_settings(admin_url: str, wanted: dict[str, str]) -> Iterator[dict[str, str]]:
    """Apply ``wanted`` to the whole server for the block; yield what a new session then sees.
    With nothing wanted (the stock server) the block still holds the lock: no other benchmark
    tunes the server under it."""
    with _TuningLock(admin_url), _applied(admin_url, wanted) as seen:
        yield seen


@contextmanager
def _applied(admin_url: str, wanted: dict[str, str]) -> Iterator[dict[str, str]]:
    names = list(wanted)
    if not names:
        yield {}
        return

    async def _set() -> dict[str, str | None]:
        conn = await asyncpg.connect(admin_url)
        try:
            before = await _auto_conf(conn, names)
            await _apply(conn, dict(wanted))
            return before
        finally:
            await conn.close()

    async def _restore(before: dict[str, str | None]) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await _apply(conn, before)
        finally:
            await conn.close()

    previous_handler = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    before = asyncio.run(_set())
    try:
        yield _wait_until_applied(admin_url, wanted)
    finally:
        asyncio.run(_restore(before))
        signal.signal(signal.SIGTERM, previous_handler)


def _wait_until_applied(
    admin_url: str, wanted: dict[str, str], timeout: float = 10.0
) -> dict[str, str]:
    """A reload is signalled, not awaited: poll until new sessions see the values."""
    normal = {name: _normal(value) for name, value in wanted.items()}
    deadline = time.monotonic() + timeout
    while True:
        seen = asyncio.run(current(admin_url, list(wanted)))
        if {n: _normal(v) for n, v in seen.items()} == normal or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def _normal(value: str) -> str:
    return value.strip().lower()
