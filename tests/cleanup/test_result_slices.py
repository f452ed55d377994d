"""Slices of the bot-id key space: whole, in order, no gaps, no overlaps; their count; counts
taken slice by slice agree with one query; every slice runs with the slice settings."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from botfleet.cleanup import database_selection, result_slices
from botfleet.cleanup.database_selection import select_bots, select_orphaned_results
from botfleet.cleanup.policy import Policy, Rule
from botfleet.cleanup.predicates import Dialect, bot_predicate
from botfleet.cleanup.result_slices import (
    MAX_SLICES,
    ROW_BYTES_GUESS,
    ROWS_PER_SLICE,
    estimated_rows,
    key_ranges,
    slice_count,
)
from botfleet.cleanup.sql import bound_text, dedicated_connection
from botfleet.config import Settings
from tests.conftest import postgres_only
from tests.support.cleanup import days
from tests.support.store import Store, store

__all__ = ["store"]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 1000])
def test_slices_cover_the_uuid_space_in_order_without_gaps(count: int) -> None:
    ranges = key_ranges(count)
    assert len(ranges) == count
    assert ranges[0].low == uuid.UUID(int=0) and ranges[-1].high is None
    for before, after in itertools.pairwise(ranges):
        assert before.high == after.low and before.low.int < after.low.int
    # Every uuid falls in exactly one slice.
    for probe in (uuid.UUID(int=0), uuid.uuid4(), uuid.UUID(int=(1 << 128) - 1)):
        inside = [
            r for r in ranges if r.low.int <= probe.int and (r.high is None or probe < r.high)
        ]
        assert len(inside) == 1


def test_the_number_of_slices_follows_the_table_size() -> None:
    assert slice_count(0) == 1
    assert slice_count(ROWS_PER_SLICE) == 1
    assert slice_count(ROWS_PER_SLICE + 1) == 2
    assert slice_count(3_050_000) == 13
    assert slice_count(10**12) == MAX_SLICES
    assert slice_count(10, per_slice=3) == 4


def test_an_unanalysed_table_is_estimated_from_its_size() -> None:
    assert estimated_rows(3_050_000.0, 1) == 3_050_000
    assert estimated_rows(-1.0, 800 * ROW_BYTES_GUESS) == 800
    assert estimated_rows(0.0, 0) == 0
    assert estimated_rows(None, 10 * ROW_BYTES_GUESS) == 10


NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(
    bot_retention_days=7,
    result_retention_days=20,
    rules=(
        Rule(number=1, match={"env": "prod"}, bot_retention_days=30, result_retention_days=60),
        Rule(number=2, match={"team": "keep"}, keeps_bots=True, keeps_results=True),
        Rule(number=3, match={"env": "dev", "tier": "1"}, bot_retention_days=0),
        Rule(number=4, match={"team": "results-only"}, result_retention_days=5),
    ),
)
LABEL_SETS = [
    {},
    {"env": "prod"},
    {"team": "keep"},
    {"team": "keep", "env": "prod"},  # rule 1 comes first
    {"env": "dev", "tier": "1"},
    {"env": "dev", "tier": "2"},
    {"team": "results-only"},
    {"botfleet.hold": "true"},
    {"botfleet.hold": "True", "env": "dev", "tier": "1"},
]
DELETED_AGO = [None, days(-1), days(0.5), days(6), days(8), days(29), days(31), days(400)]


@postgres_only
@pytest.mark.parametrize("workers", ["pooled sessions", "own connections"])
async def test_counts_agree_whether_taken_in_one_slice_or_many(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    """PostgreSQL counts slice by slice of bot ids (cleanup/result_slices.py): cut into 16 slices,
    every count — bots, their results, held, orphans — is what one query over all rows says."""
    for labels, ago in itertools.product(LABEL_SETS, DELETED_AGO):
        await store.bot(deleted_at=None if ago is None else NOW - ago, labels=labels, results=2)
    for _ in range(5):
        await store.orphans(3)  # five vanished owners, spread over the key space
    d = Dialect(postgres=True)
    p = bot_predicate(d, POLICY, NOW)
    async with store.sessions() as session:
        truth_bots = int(
            (
                await session.execute(
                    bound_text(f"SELECT count(*) FROM bots b WHERE {p.eligible}", p.binds)
                )
            ).scalar()
            or 0
        )
        truth_results = int(
            (
                await session.execute(
                    bound_text(
                        "SELECT count(*) FROM results r WHERE r.bot_id IN"
                        f" (SELECT b.id FROM bots b WHERE {p.eligible})",
                        p.binds,
                    )
                )
            ).scalar()
            or 0
        )
        whole_bots, whole_results = await select_bots(session, d, POLICY, NOW)
    slices: list[int] = []

    async def sixteen(runner: object, per_slice: int | None = None) -> list[object]:
        slices.append(16)
        return list(key_ranges(16))

    monkeypatch.setattr(result_slices, "results_slices", sixteen)
    two_at_a_time = result_slices.Slicing(
        store.sessions,
        None,
        concurrency=2,
        connect=_own(store) if workers != "pooled sessions" else None,
    )
    async with store.sessions() as session:
        bots, results = await select_bots(session, d, POLICY, NOW, two_at_a_time)
    async with store.sessions() as session:
        table = database_selection.orphan_table(uuid.uuid4())
        orphans = await select_orphaned_results(session, 10**9, two_at_a_time, table=table)
        assert await database_selection.drop_orphan_tables(session) == [table]
        await session.commit()
    assert len(slices) >= 3  # bots, their results, orphans: each walked the 16 slices
    assert truth_bots > 0 and truth_results == 2 * truth_bots
    assert (bots.found, results.found) == (truth_bots, truth_results)
    assert (whole_bots.found, whole_results.found) == (truth_bots, truth_results)
    assert bots.skipped_count == whole_bots.skipped_count > 0
    assert orphans.found == 15


# Each slice setting as 1 when it holds, and a 1 per slice: the slice's bounds bound, one row.
CHECKS = (
    "(current_setting('enable_hashjoin') = 'off')::int",
    "(current_setting('jit') = 'off')::int",
    "(current_setting('synchronous_commit') = 'off')::int",
    "(current_setting('max_parallel_workers_per_gather') = '0')::int",
    "1",
)
SETTINGS_SQL = (
    f"SELECT {', '.join(CHECKS)} FROM (VALUES (CAST(NULL AS uuid))) AS b(id) WHERE ({{b}}) OR true"
)


@postgres_only
@pytest.mark.parametrize("concurrency", [1, 2])
async def test_every_slice_runs_with_the_slice_settings(store: Store, concurrency: int) -> None:
    """Serial merges in each slice: no hash join, no JIT, no WAL wait at commit, and no
    parallel workers (slices already run CLEANUP_DB_CONCURRENCY at a time)."""
    slicing = result_slices.Slicing(store.sessions, None, concurrency=concurrency)
    async with store.sessions() as session:
        sums = await result_slices.sliced_sums(session, SETTINGS_SQL, [], slicing)
        # Transaction-local: the session's own settings are untouched afterwards.
        after = (await session.execute(text("SHOW max_parallel_workers_per_gather"))).scalar()
    slices = sums[-1]
    assert slices >= 1 and sums == [slices] * len(CHECKS)
    assert after != "0"


@postgres_only
@pytest.mark.parametrize("rows", [False, True])
async def test_workers_on_their_own_connections_set_the_slice_settings_and_reset_them(
    store: Store, monkeypatch: pytest.MonkeyPatch, rows: bool
) -> None:
    """With ``connect``, a worker sets the slice settings once for its connection's session,
    runs each slice as one statement, and resets them before the connection goes back to the
    pool, whose other users never see them."""
    monkeypatch.setattr(result_slices, "results_slices", _sixteen)
    left: list[tuple[str, ...]] = []
    slicing = result_slices.Slicing(store.sessions, None, concurrency=2, connect=_own(store, left))
    async with store.sessions() as session:
        if rows:
            seen: list[tuple[int, ...]] = []
            await result_slices.sliced_rows(
                session,
                SETTINGS_SQL,
                [],
                lambda found: seen.extend(tuple(r) for r in found),
                slicing,
            )
            sums = [sum(column) for column in zip(*seen, strict=True)]
        else:
            sums = await result_slices.sliced_sums(session, SETTINGS_SQL, [], slicing)
    assert sums == [16] * len(CHECKS)
    assert len(left) == 2  # two workers, each on its own connection
    for hashjoin, jit, gather in left:  # as each worker handed its connection back
        assert (hashjoin, jit) == ("on", "on") and gather != "0"


async def _sixteen(runner: object, per_slice: int | None = None) -> list[object]:
    return list(key_ranges(16))


def _own(store: Store, left: list[tuple[str, ...]] | None = None) -> result_slices.Connect:
    """Each worker's own connection, as the cleanup makes them; ``left``: its slice settings
    once the worker is done with it."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[AsyncConnection]:
        async with dedicated_connection(store.engine, 5_000, 60_000) as conn:
            yield conn
            if left is not None:
                row = (
                    await conn.execute(
                        text(
                            "SELECT current_setting('enable_hashjoin'), current_setting('jit'),"
                            " current_setting('max_parallel_workers_per_gather')"
                        )
                    )
                ).one()
                left.append(tuple(row))

    return connect
