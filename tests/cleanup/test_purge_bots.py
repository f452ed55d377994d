"""The purge of bots on PostgreSQL: walks of the heap in physical order (side by side, within
the stage's limit), the index sweep for what a walk cannot see, and a walk's failure; on both
stores, what goes with a purged bot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from botfleet.cleanup import batches, purge_bots
from botfleet.cleanup.batches import Tally
from botfleet.cleanup.postgres_heap_walk import HeapWalk
from botfleet.cleanup.purge_bots import BotPurge
from botfleet.config import Settings
from botfleet.store.models import BotEvent
from tests.conftest import postgres_only
from tests.support.cleanup import Clock, Recorder, batch_loop, days, deleted, make_service
from tests.support.store import Store, store

__all__ = ["store"]
NOW = datetime.now(UTC)


def bot_purge(store: Store, *, concurrency: int, size: int) -> BotPurge:
    return BotPurge(batch_loop(store, concurrency=concurrency, size=size, now=NOW))


@postgres_only
async def test_dense_bots_are_walked_in_physical_order_and_the_index_sweeps_what_it_missed(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL walks the heap (delete by TID); rows the walk cannot reach (here: beyond a
    walk cut short to the first block, as a row moved behind it would be) still go, by index."""
    expired = {await store.bot(deleted_at=NOW - days(8 + i % 5), results=2) for i in range(300)}
    live = {await store.bot(results=1) for _ in range(20)}
    calls = {"walk": 0, "index": 0}
    by_tid, by_index = BotPurge._bots_by_tid, BotPurge._bots_pg

    async def spy_tid(self: Any, *args: Any) -> Any:
        calls["walk"] += 1
        return await by_tid(self, *args)

    async def spy_index(self: Any, *args: Any) -> Any:
        calls["index"] += 1
        return await by_index(self, *args)

    async def first_block_only(conn: Any, table: str, expected: int) -> HeapWalk:
        return HeapWalk(end_block=1, density=expected)

    monkeypatch.setattr(BotPurge, "_bots_by_tid", spy_tid)
    monkeypatch.setattr(BotPurge, "_bots_pg", spy_index)
    monkeypatch.setattr(purge_bots.HeapWalk, "start", first_block_only)
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
    for i in range(120):
        await store.bot(deleted_at=NOW - days(8), results=1)
        if i % 3 == 0:
            await store.bot(results=1)  # live bots between them, on the same pages

    async def no_index(self: Any, *args: Any) -> Any:
        raise AssertionError("the walk should have found every bot")

    monkeypatch.setattr(BotPurge, "_bots_pg", no_index)
    governor = Recorder(25)
    service = make_service(settings, store, Clock(NOW), governor=governor)
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False, only=["bots"])
    assert report["status"] == "succeeded", report["errors"]
    assert deleted(report)["bots"] == 120 and deleted(report)["bot_results"] == 120
    assert all(rows <= 25 * 2 for rows in governor.seen)  # a bot and its result per row
    assert len(await store.bot_ids()) == 40


@postgres_only
async def test_concurrent_walks_purge_everything_once_and_never_more_than_the_limit(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLEANUP_DB_CONCURRENCY walks split the table; a batch reserves its rows before it runs,
    so together they stop at the stage's limit (the plan's count) exactly."""
    for _ in range(240):
        await store.bot(deleted_at=NOW - days(9), results=1)
    live = {await store.bot(results=1) for _ in range(10)}
    opened = 0
    dedicated = batches.BatchLoop.dedicated

    def counting(self: Any) -> Any:
        nonlocal opened
        opened += 1
        return dedicated(self)

    monkeypatch.setattr(batches.BatchLoop, "dedicated", counting)
    purge = bot_purge(store, concurrency=2, size=15)
    capped = Tally()
    await purge.purge_bots(capped, 100)
    assert capped.deleted == 100 and capped.related == 100 and capped.in_flight == 0
    assert len(await store.bot_ids()) == 140 + 10
    assert opened >= 2  # a second connection for the second walk
    everything = Tally()
    await bot_purge(store, concurrency=2, size=15).purge_bots(everything, 140)
    assert everything.deleted == 140 and await store.bot_ids() == {str(b) for b in live}
    governor = purge.loop.stage.run.governor
    assert isinstance(governor, Recorder)
    assert {a["resource_id"] for a in await store.audit(str(purge.run_id))} and all(
        r == 15 or r <= 30 for r in governor.seen
    )


@postgres_only
async def test_when_one_concurrent_walk_fails_the_other_ends_after_its_batch(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(300):
        await store.bot(deleted_at=NOW - days(9), results=1)
    calls = 0
    by_tid = BotPurge._bots_by_tid

    async def failing_third(
        self: Any, session: Any, size: int, window: Any, archive: str | None
    ) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom")
        return await by_tid(self, session, size, window, archive)

    monkeypatch.setattr(BotPurge, "_bots_by_tid", failing_third)
    tally = Tally()
    with pytest.raises(RuntimeError, match="boom"):
        await bot_purge(store, concurrency=2, size=10).purge_bots(tally, 300)
    # Every batch that committed is counted, and nothing else was deleted.
    assert 300 - len(await store.bot_ids()) == tally.deleted > 0
    assert tally.in_flight == 0 and not tally.aborted
    assert calls < 10  # the other walk stopped after its batch, it did not go on alone


async def test_a_purged_bot_takes_its_history_events_with_it(
    settings: Settings, store: Store
) -> None:
    """Both stores: bot_events go in the purge's own batch; a live bot's stay."""
    expired = [await store.bot(deleted_at=NOW - days(8), results=1) for _ in range(3)]
    live = await store.bot()
    async with store.sessions() as session, session.begin():
        session.add_all(
            BotEvent(bot_id=b, at=NOW - days(9), event="deleted", detail="d")
            for b in [*expired, live]
        )
    service = make_service(settings, store, Clock(NOW))
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False, only=["bots"])
    assert report["status"] == "succeeded", report["errors"]
    assert deleted(report)["bots"] == 3
    left = await store.rows("SELECT bot_id FROM bot_events")
    assert [uuid.UUID(str(r[0])) for r in left] == [live]
