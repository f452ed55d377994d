"""The quota stage's deletions on PostgreSQL (cleanup/quota_walk.py) by each road: the heap walk,
bot by bot when victims are too sparse to walk for, and bot by bot after a walk that saw only
part of the heap. Each deletes what the reference model says, re-states per batch that the bot
is live and not held, and leaves no table of cuts behind."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from botfleet.cleanup import postgres_heap_walk
from botfleet.cleanup.postgres_heap_walk import HeapWalk
from botfleet.cleanup.quota_cuts import CUTS_TABLE_PREFIX, CutsTable
from botfleet.cleanup.quota_walk import QUOTA_BATCH_FACTOR, QuotaWalk
from botfleet.config import Settings
from tests.cleanup.test_results_quota import (
    GROUPS,
    NOW,
    expected_survivors,
    policy_of,
    seed,
    terms_of,
)
from tests.conftest import postgres_only
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]

BOTS = [
    ("a", "live", 0, list(range(1, 40))),
    ("a", "live", 0, [5, 5, 5, 6, 7, 8, 9, 30, 31, 32]),
    ("b", "live", 0, list(range(2, 60, 3))),
    ("c", "live", 0, list(range(1, 25))),
    ("c", "live", 0, list(range(1, 25))),  # put on hold after the plan
]


@postgres_only
@pytest.mark.parametrize("road", ["walk", "sparse", "short walk"])
async def test_every_road_deletes_what_the_model_says(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, road: str
) -> None:
    walks: list[HeapWalk | None] = []
    start = HeapWalk.start.__func__  # type: ignore[attr-defined]

    async def started(cls: Any, *args: Any, **kw: Any) -> HeapWalk | None:
        walk: HeapWalk | None = await start(cls, *args, **kw)
        if road == "short walk" and walk is not None:
            walk.end_block = 1  # the rest of the heap is the sweep's
        walks.append(walk)
        return walk

    monkeypatch.setattr(HeapWalk, "start", classmethod(started))
    if road == "sparse":
        monkeypatch.setattr(postgres_heap_walk, "SPARSE", 1e9)
    async with store.sessions() as session, session.begin():  # results over several blocks
        await session.execute(text("ALTER TABLE results SET (fillfactor = 10)"))
    rows, states = await seed(store, BOTS)
    held = list(states)[-1]
    service = make_service(settings, store, Clock(NOW), policy=policy_of(GROUPS, 20))
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True, only="results_over_quota")
    async with store.sessions() as session, session.begin():
        await session.execute(
            text('UPDATE bots SET labels = labels || \'{"botfleet.hold": "true"}\' WHERE id = :i'),
            {"i": held},
        )
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    assert report["status"] == "succeeded", report["errors"]
    # The model as the plan saw it, less what the held bot would have lost.
    mine = {r[0] for r in rows if r[1] == held}
    want = expected_survivors(rows, terms_of(GROUPS, BOTS, states), 20) | mine
    assert await store.result_ids() == want
    entry = report["resources"]["results_over_quota"]
    assert (
        entry["deleted"] == len(rows) - len(want) < dry["resources"]["results_over_quota"]["found"]
    )
    assert (walks[0] is None) == (road == "sparse")
    audit = await store.audit_records(report["run_id"])
    assert sorted(await store.deleted_ids("results_over_quota")) == sorted(
        str(r[0]) for r in rows if r[0] not in want
    )
    assert {"max_results_per_bot" in a["reason"] for a in audit} == {True, False}
    left = await store.rows(
        "SELECT tablename FROM pg_tables WHERE starts_with(tablename, :p)", p=CUTS_TABLE_PREFIX
    )
    assert left == []


@postgres_only
@pytest.mark.parametrize("road", ["walk", "sparse"])
@pytest.mark.parametrize("change", ["hold", "delete"])
async def test_a_bot_held_or_deleted_after_its_cut_keeps_its_results(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, road: str, change: str
) -> None:
    """The cuts are written at the stage's start; each batch asks again whether the bot is
    live and not held (the walk asks it of the rows it read, after its cut)."""
    if road == "sparse":
        monkeypatch.setattr(postgres_heap_walk, "SPARSE", 1e9)
    async with store.sessions() as session, session.begin():
        await session.execute(text("ALTER TABLE results SET (fillfactor = 10)"))
    rows, states = await seed(store, BOTS)
    changed = list(states)[-1]
    fill = CutsTable.fill

    async def filled(self: CutsTable, runner: Any, *args: Any) -> int:
        total = await fill(self, runner, *args)
        cut = await runner.execute(
            text(f'SELECT count(*) FROM "{self.name}" WHERE bot_id = :i'), {"i": changed}
        )
        assert cut.scalar() == 1, "the bot had no cut: nothing here tests the batch's check"
        await runner.execute(
            text(
                'UPDATE bots SET labels = labels || \'{"botfleet.hold": "true"}\' WHERE id = :i'
                if change == "hold"
                else "UPDATE bots SET deleted_at = now() WHERE id = :i"
            ),
            {"i": changed},
        )
        if runner.in_transaction():
            await runner.commit()
        return total

    monkeypatch.setattr(CutsTable, "fill", filled)
    service = make_service(settings, store, Clock(NOW), policy=policy_of(GROUPS, 20))
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    assert report["status"] == "succeeded", report["errors"]
    mine = {r[0] for r in rows if r[1] == changed}
    want = expected_survivors(rows, terms_of(GROUPS, BOTS, states), 20) | mine
    assert await store.result_ids() == want


@postgres_only
@pytest.mark.parametrize("road", ["walk", "sparse"])
async def test_a_batch_holds_the_factor_times_the_batch_size(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, road: str
) -> None:
    """Results are light rows: a batch asks for QUOTA_BATCH_FACTOR x CLEANUP_BATCH_SIZE of them
    (the governor's size, scaled), and still deletes exactly what the model says."""
    if road == "sparse":
        monkeypatch.setattr(postgres_heap_walk, "SPARSE", 1e9)
    sizes: list[int] = []
    delete = QuotaWalk._delete

    async def counted(self: QuotaWalk, *args: Any, **kw: Any) -> Any:
        sizes.append(args[5])  # runner, victims, which, last, binds, size, archive
        return await delete(self, *args, **kw)

    monkeypatch.setattr(QuotaWalk, "_delete", counted)
    rows, states = await seed(store, BOTS)
    small = settings.model_copy(update={"cleanup_batch_size": 4})
    service = make_service(small, store, Clock(NOW), policy=policy_of(GROUPS, 20))
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    assert report["status"] == "succeeded", report["errors"]
    assert await store.result_ids() == expected_survivors(rows, terms_of(GROUPS, BOTS, states), 20)
    assert QUOTA_BATCH_FACTOR > 1
    assert sizes and max(sizes) == QUOTA_BATCH_FACTOR * 4
