"""Selection over ``results`` in slices of the ``bot_id`` key space (PostgreSQL).

Why: counting the results of expired bots, and finding orphaned results, reads every entry of
``ix_results_bot_id``. One statement over millions of rows is one long transaction; the same work
cut into ranges of ``bot_id`` is many short ones, each a merge of two index ranges read in key
order — ``ix_results_bot_id`` against ``pk_bots`` (or the partial ``ix_bots_deleted_id``),
index-only, no hash table. Slices run ``CLEANUP_DB_CONCURRENCY`` at a time (bench/plan; the
figures are in BENCHMARKS.md, Plan).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from botfleet.cleanup.sql import Runner, bound_text
from botfleet.store.session import SessionFactory

# Results per slice: a merge well inside the purge's transaction target (BENCHMARKS.md, Plan).
ROWS_PER_SLICE = 250_000
MAX_SLICES = 1024
# Bytes per results row assumed when the table was never analysed (a small row: errs towards
# more, shorter slices).
ROW_BYTES_GUESS = 80

# A slice's settings: merge over index order, not a hash of a million bots (whose random probes
# cost more than the merge); no JIT compile for a short query; no wait for a WAL flush at commit
# (a slice writes only the run's scratch table, which a crash discards anyway); no parallel
# workers (slices already run side by side, and a slice's workers would take cores from live
# traffic without making it faster). Measured in bench/plan: BENCHMARKS.md, Plan.
SLICE_SETTINGS = {
    "enable_hashjoin": "off",
    "jit": "off",
    "synchronous_commit": "off",
    "max_parallel_workers_per_gather": "0",
}

Prepare = Callable[[Runner], Awaitable[None]]
# A connection of a slice worker's own, in autocommit, the cleanup's limits set for its session.
Connect = Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]


@dataclass(frozen=True)
class KeyRange:
    """``low <= bot_id < high``; ``high`` None is the top of the key space."""

    low: uuid.UUID
    high: uuid.UUID | None


def slice_count(estimated_rows: int, per_slice: int | None = None) -> int:
    per = per_slice or ROWS_PER_SLICE
    return max(1, min(MAX_SLICES, math.ceil(max(0, estimated_rows) / per)))


def estimated_rows(reltuples: float | None, relation_bytes: int) -> int:
    """``pg_class.reltuples`` when known (-1 or 0 before the first ANALYZE), else a guess from
    the table's size."""
    guess = relation_bytes // ROW_BYTES_GUESS
    if reltuples is None or reltuples <= 0:
        return guess
    return max(int(reltuples), 0)


def key_ranges(count: int) -> list[KeyRange]:
    """``count`` equal slices of the uuid space, in key order (PostgreSQL compares uuids as
    unsigned 128-bit numbers, which is how they are cut here)."""
    count = max(1, count)
    step = (1 << 128) // count
    bounds = [uuid.UUID(int=i * step) for i in range(count)]
    return [KeyRange(low, bounds[i + 1] if i + 1 < count else None) for i, low in enumerate(bounds)]


@dataclass(frozen=True)
class Slicing:
    """How slices run: each in a transaction of its own on a pooled session, ``concurrency``
    at a time, each transaction first ``prepare``d (the cleanup's lock and statement limits).

    With ``connect`` (PostgreSQL), each of the ``concurrency`` workers runs its slices on a
    connection of its own in autocommit, the slice settings set once for its session: a slice
    is then one statement — its own transaction, as before — in one round trip, where a slice
    on a pooled session costs five (BEGIN, limits, settings, the slice, COMMIT)."""

    sessions: SessionFactory
    prepare: Prepare | None = None
    concurrency: int = 1
    connect: Connect | None = None


async def results_slices(runner: Runner, per_slice: int | None = None) -> list[KeyRange]:
    row = (
        await runner.execute(
            text(
                "SELECT reltuples, pg_relation_size(oid) FROM pg_class"
                " WHERE oid = CAST('results' AS regclass)"
            )
        )
    ).one()
    return key_ranges(slice_count(estimated_rows(row[0], int(row[1])), per_slice))


def _slice_binds(r: KeyRange) -> tuple[dict[str, str], list[Any]]:
    """``{r}``/``{b}``/``{x}`` → the slice's condition on ``r.bot_id``/``b.id``/``x.bot_id``."""
    binds: list[Any] = [bindparam("slice_lo", r.low, type_=Uuid())]
    if r.high is not None:
        binds.append(bindparam("slice_hi", r.high, type_=Uuid()))

    def cond(col: str) -> str:
        high = f" AND {col} < :slice_hi" if r.high is not None else ""
        return f"{col} >= :slice_lo{high}"

    return {"r": cond("r.bot_id"), "b": cond("b.id"), "x": cond("x.bot_id")}, binds


def _settings(local: bool) -> Any:
    """One statement setting :data:`SLICE_SETTINGS`, for the transaction or the session."""
    scope = "true" if local else "false"
    pairs = ", ".join(f"set_config('{k}', '{v}', {scope})" for k, v in SLICE_SETTINGS.items())
    return text(f"SELECT {pairs}")


@contextlib.asynccontextmanager
async def _worker_connection(connect: Connect) -> AsyncIterator[AsyncConnection]:
    """A worker's own connection with :data:`SLICE_SETTINGS` for its session, reset after
    (the connection goes back to the pool; a failed one is discarded by ``connect``)."""
    async with connect() as conn:
        await conn.execute(_settings(local=False))
        yield conn
        for setting in SLICE_SETTINGS:
            await conn.execute(text(f"RESET {setting}"))


async def _slice_transaction(runner: Runner, prepare: Prepare | None) -> None:
    """End whatever the runner has open, and set a slice's limits and planner settings."""
    if runner.in_transaction():
        await runner.commit()
    if prepare is not None:
        await prepare(runner)
    await runner.execute(_settings(local=True))


def _slice_query(sql: str, key_range: KeyRange, binds: Iterable[Any]) -> Any:
    conds, slice_binds = _slice_binds(key_range)
    for name, cond in conds.items():
        sql = sql.replace("{" + name + "}", cond)
    return bound_text(sql, [*binds, *slice_binds])


async def sliced_sums(
    runner: Runner,
    sql: str,
    binds: Iterable[Any],
    slicing: Slicing | None = None,
    per_slice: int | None = None,
) -> list[int]:
    """Column sums of ``sql`` (with ``{r}``, ``{b}``, ``{x}`` placeholders) over every slice of
    bot ids, each slice in a transaction of its own: no transaction of the selection lasts long.
    Without ``slicing`` (or with a concurrency of 1) the slices run one after another on
    ``runner``; with it, that many at once (:func:`sliced_rows`). ``per_slice``: results per
    slice, if not :data:`ROWS_PER_SLICE` (a statement that reads more per result)."""
    rows: list[list[int]] = []

    def consume(found: Sequence[Any]) -> None:
        rows.extend([int(v or 0) for v in row] for row in found)

    await sliced_rows(runner, sql, binds, consume, slicing, per_slice)
    return [sum(column) for column in zip(*rows, strict=True)] if rows else []


async def sliced_count(
    runner: Runner,
    sql: str,
    binds: Iterable[Any],
    slicing: Slicing | None = None,
    per_slice: int | None = None,
) -> int:
    sums = await sliced_sums(runner, sql, binds, slicing, per_slice)
    return sums[0] if sums else 0


async def sliced_rows(
    runner: Runner,
    sql: str,
    binds: Iterable[Any],
    consume: Callable[[Sequence[Any]], None],
    slicing: Slicing | None = None,
    per_slice: int | None = None,
) -> None:
    """Each slice's rows of ``sql`` handed to ``consume`` as the slice ends (in whatever order
    the slices end); the slices as :func:`sliced_sums` says, on pooled sessions or, with
    ``slicing.connect``, on each worker's own connection."""
    binds = list(binds)
    ranges = await results_slices(runner, per_slice)
    if runner.in_transaction():
        await runner.commit()

    async def one(session: Runner, key_range: KeyRange, prepare: Prepare | None) -> None:
        await _slice_transaction(session, prepare)
        rows = (await session.execute(_slice_query(sql, key_range, binds))).all()
        await session.commit()
        consume(rows)

    if slicing is None or slicing.concurrency <= 1 or len(ranges) == 1:
        for key_range in ranges:
            await one(runner, key_range, slicing.prepare if slicing is not None else None)
        return
    pending = list(reversed(ranges))

    async def worker(sessions: SessionFactory, prepare: Prepare | None) -> None:
        if slicing.connect is not None:
            async with _worker_connection(slicing.connect) as conn:
                while pending:
                    consume((await conn.execute(_slice_query(sql, pending.pop(), binds))).all())
            return
        async with sessions() as session:
            while pending:
                await one(session, pending.pop(), prepare)

    workers = min(slicing.concurrency, len(ranges))
    await asyncio.gather(*(worker(slicing.sessions, slicing.prepare) for _ in range(workers)))
