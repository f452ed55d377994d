"""Execution: batches, caps, stop requests, observers, failure isolation, result retention."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.runtime.docker import DockerEngine
from botfleet.runtime.fleet import Fleet
from botfleet.store.migrate import upgrade
from botfleet.store.models import Result
from tests.conftest import make_settings, postgres_only
from tests.support.cleanup import Clock, days, deleted, found, make_service
from tests.support.containers import Containers, containers, labels_for
from tests.support.store import Store, store

__all__ = ["containers", "store"]
NOW = datetime.now(UTC)


class Recorder:
    """A governor that keeps to a size and remembers each batch it was told about."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: list[int] = []

    def next_size(self) -> int:
        return self.size

    def observe(self, seconds: float, rows: int) -> None:
        assert seconds >= 0
        self.seen.append(rows)


async def test_batches_follow_the_governor(settings: Settings, store: Store) -> None:
    for i in range(5):
        await store.bot(deleted_at=NOW - days(8 + i), results=3)
    await store.orphans(3)
    governor = Recorder(2)
    service = make_service(settings, store, Clock(NOW), governor=governor)
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert deleted(report) == {"bots": 5, "bot_results": 15, "orphaned_results": 3, "containers": 0}
    # Bots: 2+2+1 (each with its 3 results), then orphans 2+1: one transaction per batch.
    assert governor.seen == [8, 8, 4, 2, 1]


async def test_the_default_batch_size_is_the_setting(settings_factory: Any, store: Store) -> None:
    for i in range(3):
        await store.bot(deleted_at=NOW - days(8 + i))
    settings = settings_factory(cleanup_batch_size=2, container_cleanup_enabled=False)
    service = make_service(settings, store, Clock(NOW))
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False, only="bots")
    assert report["resources"]["bots"]["deleted"] == 3
    assert len(await store.audit(report["run_id"])) == 3  # one item per bot
    # Stored one record per batch: 2 + 1.
    assert [r["resource_count"] for r in await store.audit_records(report["run_id"])] == [2, 1]


async def test_a_stage_over_the_cap_deletes_nothing(settings_factory: Any, store: Store) -> None:
    bots = {await store.bot(deleted_at=NOW - days(8 + i)) for i in range(3)}
    await store.orphans(2)
    settings = settings_factory(cleanup_max_deletions=2, container_cleanup_enabled=False)
    service = make_service(settings, store, Clock(NOW))
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert report["status"] == "partial"
    res = report["resources"]
    assert (res["bots"]["found"], res["bots"]["deleted"]) == (3, 0)
    assert res["bots"]["outcome"] == "refused" and res["bots"]["capped"] is True
    assert res["orphaned_results"]["deleted"] == 2  # the other stage still ran
    (error,) = report["errors"]
    assert error["stage"] == "bots" and "CLEANUP_MAX_DELETIONS=2" in error["message"]
    assert await store.bot_ids() == {str(b) for b in bots}
    # The dry run says the same thing, the same way.
    dry = await service.run(trigger="cli", actor="cli:x", dry_run=True)
    assert dry["resources"]["bots"]["outcome"] == "refused" and dry["status"] == "partial"


async def test_a_stop_request_ends_the_run_after_the_current_batch(
    settings: Settings, store: Store
) -> None:
    for i in range(4):
        await store.bot(deleted_at=NOW - days(8 + i), results=1)
    await store.orphans(2)
    service: CleanupService

    class StopAfterFirst(Recorder):
        def observe(self, seconds: float, rows: int) -> None:
            super().observe(seconds, rows)
            service.request_stop()

    service = make_service(settings, store, Clock(NOW), governor=StopAfterFirst(1))
    report = await service.run(trigger="schedule", actor="schedule", dry_run=False)
    assert report["status"] == "partial"
    res = report["resources"]
    assert (res["bots"]["deleted"], res["bot_results"]["deleted"]) == (1, 1)
    assert res["bots"]["outcome"] == "interrupted"
    assert res["orphaned_results"]["outcome"] == "interrupted"
    assert res["orphaned_results"]["deleted"] == 0
    assert [(e["stage"], e["reason"]) for e in report["errors"]] == [("bots", "interrupted")]
    # The lock is free again, and the stop was consumed by the run it ended.
    service.governor = None
    again = await service.run(trigger="schedule", actor="schedule", dry_run=False)
    assert again["status"] == "succeeded", again["errors"]
    assert again["resources"]["bots"]["deleted"] == 3


async def test_observers_see_the_report_and_cannot_fail_the_run(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[dict[str, Any]] = []

    def broken(report: dict[str, Any]) -> None:
        raise RuntimeError("metrics bug")

    async def collector(report: dict[str, Any]) -> None:
        seen.append(report)

    service = make_service(settings, store, observers=[broken, collector])
    with caplog.at_level(logging.INFO, logger="botfleet.cleanup.service"):
        report = await service.run(trigger="manual", actor="api:abc@127.0.0.1", dry_run=True)
    assert report["status"] == "succeeded"
    assert seen == [report]
    lines = [r for r in caplog.records if r.getMessage().startswith("cleanup run ")]
    assert len(lines) == 1
    line = lines[0].getMessage()
    assert report["run_id"] in line and "succeeded (dry run)" in line and "\n" not in line
    assert any("observer" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


async def test_open_breakers_and_dead_engines_leave_the_rest_running(
    settings_factory: Any, store: Store, containers: Containers, instance: str
) -> None:
    orphan = containers.make("exited", labels_for(instance))
    await store.orphans(1)
    settings = settings_factory(container_cleanup_grace_minutes=0)
    dead = DockerEngine("unix:///nonexistent/docker.sock", timeout=2)
    fleet = Fleet([DockerEngine(""), dead])
    service = CleanupService(settings=settings, sessions=store.sessions, fleet=fleet)
    try:
        report = await service.run(trigger="schedule", actor="schedule", dry_run=False)
        assert report["status"] == "partial"
        res = report["resources"]
        assert res["orphaned_results"]["deleted"] == 1
        assert res["containers"]["deleted"] == 1 and containers.state(orphan) is None
        assert res["containers"]["outcome"] == "partial"
        (error,) = report["errors"]
        assert error["stage"] == "containers" and error["engine"] == dead.name

        skipped = await service.run(
            trigger="schedule", actor="schedule", dry_run=True, skip_engines={dead.name}
        )
        assert skipped["status"] == "partial" and skipped["errors"] == []
        assert skipped["resources"]["containers"]["skipped"] == [
            {"id": f"engine:{dead.name}", "reason": "breaker open", "engine": dead.name}
        ]
    finally:
        await fleet.close()


async def test_result_retention_for_live_bots(settings_factory: Any, store: Store) -> None:
    settings = settings_factory(result_retention_days=14, cleanup_batch_size=2)
    live = await store.bot()
    held = await store.bot(labels={"botfleet.hold": "true"})
    async with store.sessions() as session, session.begin():
        for bot_id in (live, held):
            session.add_all(Result(bot_id=bot_id, created_at=NOW - days(d)) for d in (1, 15, 20))
    service = make_service(settings, store, Clock(NOW))
    dry = await service.run(trigger="cli", actor="cli:x", dry_run=True)
    assert found(dry)["results"] == 2
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert report["resources"]["results"]["deleted"] == 2
    assert await store.results_of(live) == 1 and await store.results_of(held) == 3
    audit = await store.audit(report["run_id"])
    assert [a["kind"] for a in audit] == ["results"]
    # Without a retention for results the stage is off, and says so.
    plain = make_service(settings_factory(), store, Clock(NOW))
    assert "results" not in (await plain.run(trigger="cli", actor="x", dry_run=True))["resources"]


async def test_a_failing_stage_does_not_stop_the_others(fresh_pg_database: str) -> None:
    """A bot row locked by someone else past CLEANUP_LOCK_TIMEOUT_MS fails the bots stage (a
    database error the breaker counts); the orphan stage still runs; the run is partial."""
    settings = make_settings(
        database_url=fresh_pg_database,
        cleanup_lock_timeout_ms=100,
        container_cleanup_enabled=False,
    )
    await upgrade(settings)
    store = Store(settings)
    try:
        locked = await store.bot(deleted_at=NOW - days(10), results=1)
        await store.orphans(2)
        service = make_service(settings, store, Clock(NOW))
        conn = await asyncpg.connect(fresh_pg_database)
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM bots WHERE id = $1 FOR UPDATE", locked)
                report = await asyncio.wait_for(
                    service.run(trigger="schedule", actor="schedule", dry_run=False), 30
                )
        finally:
            await conn.close()
        assert report["status"] == "partial"
        res = report["resources"]
        assert res["bots"]["outcome"] == "failed" and res["bots"]["deleted"] == 0
        assert res["orphaned_results"]["deleted"] == 2
        (error,) = report["errors"]
        assert error["stage"] == "bots" and error["dependency"] == "database"
        assert "lock timeout" in error["message"]
        assert await store.bot_ids() == {str(locked)}
    finally:
        await store.close()


async def test_trigger_is_checked(settings: Settings, store: Store) -> None:
    from botfleet.errors import InvalidInput

    with pytest.raises(InvalidInput, match="trigger"):
        await make_service(settings, store).run(trigger="cron", actor="x", dry_run=True)
    assert (await store.counts())["cleanup_runs"] == 0  # refused before anything was written


@postgres_only
async def test_dense_bots_are_walked_in_physical_order_and_the_index_sweeps_what_it_missed(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL walks the heap (delete by TID); rows the walk cannot reach (here: beyond a
    walk cut short to the first block, as a row moved behind it would be) still go, by index."""
    from botfleet.cleanup import execute
    from botfleet.cleanup.heapwalk import HeapWalk

    expired = {await store.bot(deleted_at=NOW - days(8 + i % 5), results=2) for i in range(300)}
    live = {await store.bot(results=1) for _ in range(20)}
    calls = {"walk": 0, "index": 0}
    by_tid, by_index = execute.Executor._bots_by_tid, execute.Executor._bots_pg

    async def spy_tid(self: Any, *args: Any) -> Any:
        calls["walk"] += 1
        return await by_tid(self, *args)

    async def spy_index(self: Any, *args: Any) -> Any:
        calls["index"] += 1
        return await by_index(self, *args)

    async def first_block_only(conn: Any, table: str, expected: int) -> HeapWalk:
        return HeapWalk(end_block=1, density=expected)

    monkeypatch.setattr(execute.Executor, "_bots_by_tid", spy_tid)
    monkeypatch.setattr(execute.Executor, "_bots_pg", spy_index)
    monkeypatch.setattr(execute.HeapWalk, "start", first_block_only)
    governor = Recorder(40)
    service = make_service(settings, store, Clock(NOW), governor=governor)
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False, only=["bots"])
    assert report["status"] == "succeeded", report["errors"]
    assert deleted(report)["bots"] == 300 and deleted(report)["bot_results"] == 600
    assert calls["walk"] >= 1 and calls["index"] >= 1
    assert await store.bot_ids() == {str(b) for b in live}
    audit = await store.audit(report["run_id"])
    assert {a["resource_id"] for a in audit if a["kind"] == "bots"} == {str(b) for b in expired}
    assert all(a["snapshot"] and a["snapshot"]["results_deleted"] == 2 for a in audit)


@postgres_only
async def test_the_heap_walk_alone_purges_a_dense_table_batch_by_batch(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botfleet.cleanup import execute

    for i in range(120):
        await store.bot(deleted_at=NOW - days(8), results=1)
        if i % 3 == 0:
            await store.bot(results=1)  # live bots between them, on the same pages

    async def no_index(self: Any, *args: Any) -> Any:
        raise AssertionError("the walk should have found every bot")

    monkeypatch.setattr(execute.Executor, "_bots_pg", no_index)
    governor = Recorder(25)
    service = make_service(settings, store, Clock(NOW), governor=governor)
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False, only=["bots"])
    assert report["status"] == "succeeded", report["errors"]
    assert deleted(report)["bots"] == 120 and deleted(report)["bot_results"] == 120
    assert all(rows <= 25 * 2 for rows in governor.seen)  # a bot and its result per row
    assert len(await store.bot_ids()) == 40


def _executor(store: Store | None, concurrency: int, size: int) -> Any:
    """The bots stage's executor as stages.py builds it, on the test's store (None: no database,
    for a test of the batch loop alone)."""
    import uuid as _uuid

    from botfleet.cleanup.execute import Executor
    from botfleet.cleanup.policy import Policy
    from botfleet.cleanup.predicates import Dialect

    async def checkpoint() -> None:
        return None

    return Executor(
        sessions=store.sessions if store is not None else None,
        dialect=Dialect(postgres=True),
        policy=Policy(7),
        now=NOW,
        run_id=_uuid.uuid4(),
        actor="cli:test",
        checkpoint=checkpoint,
        governor=Recorder(size),
        concurrency=concurrency,
    )


@postgres_only
async def test_concurrent_walks_purge_everything_once_and_never_more_than_the_limit(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLEANUP_DB_CONCURRENCY walks split the table; a batch reserves its rows before it runs,
    so together they stop at the stage's limit (the plan's count) exactly."""
    from botfleet.cleanup import execute
    from botfleet.cleanup.execute import Tally

    for _ in range(240):
        await store.bot(deleted_at=NOW - days(9), results=1)
    live = {await store.bot(results=1) for _ in range(10)}
    opened = 0
    dedicated = execute.Executor.dedicated

    def counting(self: Any) -> Any:
        nonlocal opened
        opened += 1
        return dedicated(self)

    monkeypatch.setattr(execute.Executor, "dedicated", counting)
    executor = _executor(store, concurrency=2, size=15)
    capped = Tally()
    await executor.purge_bots(capped, 100)
    assert capped.deleted == 100 and capped.related == 100 and capped.in_flight == 0
    assert len(await store.bot_ids()) == 140 + 10
    assert opened >= 2  # a second connection for the second walk
    everything = Tally()
    await _executor(store, concurrency=2, size=15).purge_bots(everything, 140)
    assert everything.deleted == 140 and await store.bot_ids() == {str(b) for b in live}
    assert {a["resource_id"] for a in await store.audit(str(executor.run_id))} and all(
        r == 15 or r <= 30 for r in executor.governor.seen
    )


async def test_a_walk_waits_for_a_batch_that_reserved_the_rest_then_takes_its_leftover() -> None:
    """Two walks, limit 4, batches of 3: A reserves 3 but its part holds 1 row; B, with 3 rows,
    finds the limit all reserved after its first batch. B must wait for A's batch and take the
    2 rows A did not use, not end with rows left (the index sweep's to find, slowly, or not at
    all). A fake step: the loop's bookkeeping is what is tested, not SQL."""
    from botfleet.cleanup.execute import Tally, _Batch, together

    executor = _executor(None, concurrency=2, size=3)
    b_went_first = asyncio.Event()
    left = {"a": 1, "b": 3}

    def part(name: str) -> Any:
        async def step(_conn: Any, size: int, _cursor: Any) -> _Batch:
            if name == "a":
                await b_went_first.wait()
            taken = min(size, left[name])
            left[name] -= taken
            if name == "b":
                b_went_first.set()
            return _Batch(taken, taken, done=left[name] == 0)

        return step

    tally = Tally()
    walks = [
        executor._loop("bots", tally, 4, part(name), connection=object(), autocommit=True)
        for name in ("a", "b")
    ]
    await asyncio.wait_for(together(tally, walks), timeout=10)
    assert left == {"a": 0, "b": 0}
    assert tally.deleted == 4 and tally.in_flight == 0 and tally.batches == 3


@postgres_only
async def test_when_one_concurrent_walk_fails_the_other_ends_after_its_batch(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botfleet.cleanup import execute
    from botfleet.cleanup.execute import Tally

    for _ in range(300):
        await store.bot(deleted_at=NOW - days(9), results=1)
    calls = 0
    by_tid = execute.Executor._bots_by_tid

    async def failing_third(self: Any, session: Any, size: int, window: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom")
        return await by_tid(self, session, size, window)

    monkeypatch.setattr(execute.Executor, "_bots_by_tid", failing_third)
    tally = Tally()
    with pytest.raises(RuntimeError, match="boom"):
        await _executor(store, concurrency=2, size=10).purge_bots(tally, 300)
    # Every batch that committed is counted, and nothing else was deleted.
    assert 300 - len(await store.bot_ids()) == tally.deleted > 0
    assert tally.in_flight == 0 and not tally.aborted
    assert calls < 10  # the other walk stopped after its batch, it did not go on alone


@postgres_only
async def test_orphan_tables_last_one_run_and_a_crashed_runs_is_dropped_by_the_next(
    settings: Settings, store: Store
) -> None:
    from sqlalchemy import text

    from botfleet.cleanup.plan import ORPHAN_TABLE_PREFIX

    leftover = ORPHAN_TABLE_PREFIX + "0" * 32
    async with store.sessions() as session, session.begin():
        await session.execute(text(f'CREATE UNLOGGED TABLE "{leftover}" (id bigint)'))
    await store.orphans(4)
    service = make_service(settings, store, Clock(NOW))
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert deleted(report)["orphaned_results"] == 4
    async with store.sessions() as session:
        tables = await session.execute(
            text("SELECT tablename FROM pg_tables WHERE tablename LIKE :p"),
            {"p": ORPHAN_TABLE_PREFIX + "%"},
        )
        assert list(tables) == []
