"""A PostgreSQL server tuned for a benchmark, and put back as it was afterwards.

Only settings that a reload applies (``ALTER SYSTEM`` + ``pg_reload_conf()``): the server is
shared with other work — test suites run against it at the same time — so it is never restarted,
and ``shared_buffers`` or ``wal_buffers``, which need a restart, stay as they are.

What ``postgresql.auto.conf`` held for each setting before is read back from
``pg_file_settings`` and restored exactly (``ALTER SYSTEM SET`` the old value, or ``RESET`` when
there was none) in a ``finally``; a SIGTERM is turned into an exception so that it runs then too.
Two benchmarks tuning one server at the same time would restore each other's values: the
benchmarks that tune (bench.purge, bench.scaling) run one at a time (bench.all runs them in turn).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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
    """Apply ``wanted`` to the whole server for the block; yield what a new session then sees."""
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
