"""SQL plumbing shared by the selection and the purges: bound text, scalars, session limits.

Both backends run the same statements where they can; the differences are spelled in
:class:`~botfleet.cleanup.predicates.Dialect`.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from botfleet.store.models import UTCDateTime

# Work runs on a pooled session, or on a connection of its own (a stage's, a slice's).
Runner = AsyncSession | AsyncConnection
SESSION_LIMITS = ("lock_timeout", "statement_timeout", "synchronous_commit")


def bound_text(sql: str, binds: Iterable[Any] = ()) -> Any:
    """``text()`` with the bound parameters it names, each once (fragments share names)."""
    unique = {b.key: b for b in binds if re.search(rf":{b.key}\b", sql)}
    return text(sql).bindparams(*unique.values())


def uuid_list(name: str, ids: Sequence[uuid.UUID]) -> Any:
    return bindparam(name, list(ids), type_=Uuid(), expanding=True)


def at_now(now: datetime) -> Any:
    return bindparam("now", now, type_=UTCDateTime())


async def scalar(runner: Runner, sql: str, binds: Iterable[Any] = ()) -> int:
    return int((await runner.execute(bound_text(sql, binds))).scalar() or 0)


async def set_limits(
    runner: Runner, lock_ms: int, statement_ms: int, async_commit: bool, local: bool = True
) -> None:
    """PostgreSQL: bounded waits, optionally no WAL flush per commit, in one round trip.
    ``local`` (SET LOCAL) ends them with the transaction; otherwise they last for the session."""
    scope = "true" if local else "false"
    extra = f", set_config('synchronous_commit', 'off', {scope})" if async_commit else ""
    await runner.execute(
        bound_text(
            f"SELECT set_config('lock_timeout', :lt, {scope}),"
            f" set_config('statement_timeout', :st, {scope}){extra}",
            [bindparam("lt", f"{lock_ms}ms"), bindparam("st", f"{statement_ms}ms")],
        )
    )


@contextlib.asynccontextmanager
async def dedicated_connection(
    db: AsyncEngine, lock_ms: int, statement_ms: int, *, autocommit: bool = True
) -> AsyncIterator[AsyncConnection]:
    """PostgreSQL: one connection for a whole stage, in autocommit, its limits set once.

    Each batch is then a single statement — its own transaction — in one round trip, where a
    pooled session per batch costs five (checkout ping, BEGIN, limits, the batch, COMMIT). No
    WAL flush per commit: a crash may undo the last few batches, each whole (its audit with it),
    never half of one; the next run redoes them.
    https://www.postgresql.org/docs/current/wal-async-commit.html

    ``autocommit=False`` (an archived purge: the batch's file is written between its statement
    and its commit): the same limits, and each batch opens and commits its own transaction."""
    conn = await db.connect()
    try:
        if autocommit:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await set_limits(conn, lock_ms, statement_ms, True, False)
        if conn.in_transaction():
            await conn.commit()
        yield conn
        for setting in SESSION_LIMITS:
            await conn.execute(text(f"RESET {setting}"))
        if conn.in_transaction():
            await conn.commit()
    except BaseException:
        await conn.invalidate()  # mid-statement or broken: never back to the pool as is
        raise
    finally:
        await conn.close()


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))
