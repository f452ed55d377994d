"""The budget's boundary on PostgreSQL, searched band by band (cleanup/quota_boundary.py): the
estimate (pure) and its bands always narrow the search, and — with bands small enough that
the search takes many passes, bursts that the estimate gets wrong, ties in time, quotas,
floors and two priorities — a run deletes exactly what the reference model says."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botfleet.cleanup import quota_boundary, quota_counts
from botfleet.cleanup.quota_boundary import split_points
from botfleet.cleanup.quota_estimate import Estimate, Span
from botfleet.config import Settings
from tests.cleanup.test_results_quota import (
    NOW,
    Group,
    expected_survivors,
    policy_of,
    seed,
    terms_of,
)
from tests.conftest import postgres_only
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]


def test_the_estimate_spreads_each_span_evenly() -> None:
    estimate = Estimate([Span(0, 100, 10), Span(50, 150, 20), Span(200, 200, 5)])
    assert estimate.total == 35
    assert estimate.value(-1) == 0 and estimate.value(1000) == 35
    assert estimate.value(50) == pytest.approx(5)
    assert estimate.value(100) == pytest.approx(10 + 10)
    assert estimate.value(150) == pytest.approx(30)
    assert estimate.value(201) == pytest.approx(35)  # one instant: a step of a microsecond
    for v in (0.5, 5, 17.5, 29, 33):
        assert estimate.value(estimate.time_of(v)) == pytest.approx(v)


spans = st.lists(
    st.builds(
        lambda a, w, n: Span(a, a + w, n),
        st.integers(0, 10_000),
        st.integers(0, 5_000),
        st.integers(1, 500),
    ),
    min_size=1,
    max_size=20,
)


@given(spans=spans, data=st.data())
def test_a_band_always_narrows_the_search(spans: list[Span], data: st.DataObject) -> None:
    estimate = Estimate(spans)
    low = data.draw(st.integers(-10, 15_000))
    high = data.draw(st.integers(low + 2, 20_000))
    low_n = data.draw(st.integers(0, 1000))
    high_n = data.draw(st.integers(low_n + 1, 2000))
    m = data.draw(st.integers(low_n + 1, high_n))
    width = data.draw(st.floats(1, 1e6))
    p1, p2 = split_points(estimate, low, high, low_n, high_n, m, width)
    assert low <= p1 <= p2 <= high
    # Whichever part holds the m-th, it is smaller than [low, high).
    assert all(b - a < high - low for a, b in ((low, p1), (p1, p2), (p2, high)))


GROUPS = [Group("a", 40, 3, 0), Group("b", None, 5, 0), Group("c", None, 1, 2)]


def draws(seed_: int) -> list[tuple[str, str, int, list[int]]]:
    """Bots whose results come in bursts (the estimate assumes an even spread) and share
    minutes (ties broken by id)."""
    rng = random.Random(seed_)
    bots = []
    for i in range(18):
        group = GROUPS[i % 3].name
        burst = rng.randrange(0, 3000)
        ages = [burst + rng.randrange(0, 20) for _ in range(rng.randrange(10, 60))]
        ages += [rng.randrange(0, 5000) for _ in range(rng.randrange(0, 30))]
        bots.append((group, "held" if i == 7 else "live", 0, ages))
    return bots


@postgres_only
@pytest.mark.parametrize(("seed_", "budget"), [(1, 300), (2, 150), (3, 600), (4, 450)])
@pytest.mark.parametrize("band_sent", [0, 5_000])  # bands never sent back, or sent when small
async def test_a_many_band_search_deletes_what_the_model_says(
    settings: Settings,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    seed_: int,
    budget: int,
    band_sent: int,
) -> None:
    monkeypatch.setattr(quota_boundary, "BAND_SENT", band_sent)
    monkeypatch.setattr(quota_boundary, "SORTED_OUTRIGHT", 3)
    monkeypatch.setattr(quota_boundary, "FIRST_BAND", 2)
    monkeypatch.setattr(quota_boundary, "FIRST_BAND_SHARE", 0.0)
    passes: list[Any] = []
    counted = quota_boundary._count

    async def count(*args: Any) -> Any:
        passes.append(args[3:5])
        return await counted(*args)

    monkeypatch.setattr(quota_boundary, "_count", count)
    selects: list[Any] = []
    select = quota_boundary._select

    async def selected(*args: Any) -> Any:
        selects.append(args[3])
        return await select(*args)

    monkeypatch.setattr(quota_boundary, "_select", selected)
    bots = draws(seed_)
    rows, states = await seed(store, bots)
    want = expected_survivors(rows, terms_of(GROUPS, bots, states), budget)
    policy = policy_of(GROUPS, budget)
    service = make_service(settings, store, Clock(NOW + timedelta(minutes=1)), policy=policy)
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True, only="results_over_quota")
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    assert report["status"] == "succeeded", report["errors"]
    assert await store.result_ids() == want
    entry = report["resources"]["results_over_quota"]
    assert (
        entry["deleted"] == dry["resources"]["results_over_quota"]["found"] == len(rows) - len(want)
    )
    assert len(passes) > 1, "the search took one band: nothing here tested its narrowing"
    # Without bands sent back the search ends by selecting; with them, when the m-th is in one.
    assert len(selects) == 1 if band_sent == 0 else len(selects) <= 1


@postgres_only
@pytest.mark.parametrize("seed_", [5, 6])
async def test_the_budget_counts_every_row_in_any_number_of_slices_at_once(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, seed_: int
) -> None:
    """The table's count comes from the per-bot pass (every bot id of a slice, counted): with
    orphaned results and deleted and held bots' results in the table, the budget sees every
    row, and the plan is the model's whether the slices run one at a time or side by side."""
    monkeypatch.setattr(quota_boundary, "SORTED_OUTRIGHT", 3)
    monkeypatch.setattr(quota_boundary, "FIRST_BAND", 2)
    monkeypatch.setattr(quota_boundary, "FIRST_BAND_SHARE", 0.0)
    for module in (quota_boundary, quota_counts):
        monkeypatch.setattr(module, "PER_SLICE", 5)  # many slices
    bots = draws(seed_)
    bots[3] = (bots[3][0], "deleted", 0, bots[3][3])
    rows, states = await seed(store, bots)
    for count in (7, 3, 11):  # orphans under random bot ids: in several slices
        ids = await store.orphans(count)
        rows += [(i, f"orphan-{i}", NOW) for i in ids]
    budget = len(rows) // 2
    want = expected_survivors(rows, terms_of(GROUPS, bots, states), budget)
    policy = policy_of(GROUPS, budget)
    plans = []
    for concurrency in (1, 3):
        tuned = settings.model_copy(update={"cleanup_db_concurrency": concurrency})
        service = make_service(tuned, store, Clock(NOW + timedelta(minutes=1)), policy=policy)
        dry = await service.run(
            trigger="cli", actor="cli:t", dry_run=True, only="results_over_quota"
        )
        entry = dry["resources"]["results_over_quota"]
        assert entry["budget"]["rows_before"] == len(rows)
        plans.append((entry["found"], entry["sample"], entry["budget"]))
    assert plans[0] == plans[1]
    assert plans[0][0] == len(rows) - len(want)
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    assert report["status"] == "succeeded", report["errors"]
    assert await store.result_ids() == want


@postgres_only
@pytest.mark.parametrize("change", ["one bot deleted", "one deleted, another released"])
async def test_a_search_that_sees_other_bots_than_the_first_pass_stops(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The band counts come back as sums per slice, so each slice also says which bots it
    counted (how many, and the sum of their ids' hashes): a bot deleted between the passes,
    or one deleted and another released from its hold (the same number of bots), stops the
    search instead of answering from a different set of bots."""
    monkeypatch.setattr(quota_boundary, "SORTED_OUTRIGHT", 3)
    monkeypatch.setattr(quota_boundary, "FIRST_BAND", 2)
    monkeypatch.setattr(quota_boundary, "FIRST_BAND_SHARE", 0.0)
    bots = draws(1)
    _, states = await seed(store, bots)
    ids = list(states)
    # The search is among group c's bots (the lowest priority cannot cover the budget).
    assert bots[2][0] == bots[5][0] == "c"
    await store._set_bot(ids[5], labels={"group": "c", "botfleet.hold": "true"})
    counted = quota_boundary._count
    priorities: list[int] = []

    async def count(*args: Any) -> Any:
        if not priorities:
            await store.soft_delete(ids[2], NOW)
            if change != "one bot deleted":
                await store._set_bot(ids[5], labels={"group": "c"})
        priorities.append(next(b.value for b in args[2] if b.key == "bp"))
        return await counted(*args)

    monkeypatch.setattr(quota_boundary, "_count", count)
    service = make_service(
        settings, store, Clock(NOW + timedelta(minutes=1)), policy=policy_of(GROUPS, 300)
    )
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True, only="results_over_quota")
    assert priorities == [2], "the search did not count a band of group c's bots"
    assert "the store changed while the budget's boundary was searched" in str(dry["errors"])
