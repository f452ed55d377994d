"""Result quotas and the store's budget: a run deletes exactly what a reference model in plain
Python says (ranks newest first per bot; the budget's oldest of the lowest priority first), and
— whatever hypothesis draws — never one of a bot's newest ``max_results_per_bot``, never below a
floor, never a held or deleted bot's result; on both backends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from botfleet.cleanup.policy import Policy, parse_rules
from botfleet.cleanup.rules import ResultsBudget
from botfleet.config import Settings
from botfleet.store.models import Result
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Group:
    """Bots sharing a rule (matched by label group=<name>)."""

    name: str
    quota: int | None
    floor: int | None
    priority: int


def policy_of(groups: list[Group], budget: int | None) -> Policy:
    rules = []
    for g in groups:
        rule: dict[str, Any] = {"match": {"group": g.name}, "priority": g.priority}
        if g.quota is not None:
            rule["max_results_per_bot"] = g.quota
        if g.floor is not None:
            rule["min_results_per_bot"] = g.floor
        if g.quota is None and g.floor is None:
            rule["min_results_per_bot"] = 0
        rules.append(rule)
    return Policy(
        bot_retention_days=7,
        rules=parse_rules({"rules": rules}),
        results_budget=None if budget is None else ResultsBudget(budget, "rows"),
    )


def expected_survivors(
    rows: list[tuple[int, str, datetime]],
    terms: dict[str, tuple[int | None, int, int]],
    budget: int | None,
) -> set[int]:
    """The reference model. ``rows``: (id, bot, created_at) of every result; ``terms``: bot →
    (quota, floor, priority) for the live, unheld bots (others keep everything)."""
    ranks: dict[int, int] = {}
    by_bot: dict[str, list[tuple[datetime, int]]] = {}
    for rid, bot, at in rows:
        by_bot.setdefault(bot, []).append((at, rid))
    for items in by_bot.values():
        for n, (_, rid) in enumerate(sorted(items, reverse=True), start=1):
            ranks[rid] = n
    gone = set()
    candidates = []
    for rid, bot, at in rows:
        if bot not in terms:
            continue
        quota, floor, prio = terms[bot]
        if quota is not None and ranks[rid] > quota:
            gone.add(rid)
        elif ranks[rid] > max(floor, 1):  # the budget never takes a bot's newest result
            candidates.append((prio, at, rid))
    if budget is not None:
        over = max(0, len(rows) - len(gone) - budget)
        gone |= {rid for _, _, rid in sorted(candidates)[:over]}
    return {rid for rid, _, _ in rows} - gone


async def seed(
    store: Store, bots: list[tuple[str, str, int, list[int]]]
) -> tuple[list[tuple[int, str, datetime]], dict[str, str]]:
    """``bots``: (group, state live|held|deleted, _, result ages in minutes). Returns every
    result (id, bot, created_at) and each bot's state."""
    rows, states = [], {}
    for group, state, _, ages in bots:
        labels = {"group": group} | ({"botfleet.hold": "true"} if state == "held" else {})
        bot_id = await store.bot(
            labels=labels, deleted_at=NOW - timedelta(days=1) if state == "deleted" else None
        )
        states[str(bot_id)] = state
        async with store.sessions() as session, session.begin():
            made = [
                Result(bot_id=bot_id, created_at=NOW - timedelta(minutes=a), data={}) for a in ages
            ]
            session.add_all(made)
            await session.flush()
            rows += [(r.id, str(bot_id), r.created_at) for r in made]
    return rows, states


def terms_of(
    groups: list[Group], bots: list[tuple[str, str, int, list[int]]], states: dict[str, str]
) -> dict[str, tuple[int | None, int, int]]:
    by_name = {g.name: g for g in groups}
    out = {}
    for bot_id, (group, _, _, _) in zip(states, bots, strict=True):
        if states[bot_id] == "live":
            g = by_name[group]
            out[bot_id] = (g.quota, g.floor or 0, g.priority)
    return out


async def run_once(
    settings: Settings, groups: list[Group], bots: list[Any], budget: int | None
) -> tuple[set[int], set[int], dict[str, Any], list[tuple[int, str, datetime]], dict[str, str]]:
    store = Store(settings)
    try:
        await store.wipe()
        rows, states = await seed(store, bots)
        want = expected_survivors(rows, terms_of(groups, bots, states), budget)
        service = make_service(settings, store, Clock(NOW), policy=policy_of(groups, budget))
        report = await service.run(
            trigger="cli", actor="cli:t", dry_run=False, only="results_over_quota"
        )
        assert report["status"] == "succeeded", report["errors"]
        return await store.result_ids(), want, report, rows, states
    finally:
        await store.close()


GROUPS = [Group("a", 3, None, 0), Group("b", None, 2, 5), Group("c", 5, 1, -1)]


async def test_quota_and_budget_follow_the_model(settings: Settings, store: Store) -> None:
    same = [30, 30, 30, 31]  # ties in created_at: the larger id is the newer
    bots = [
        ("a", "live", 0, [1, 2, 3, 4, 5, 6, *same]),
        ("a", "held", 0, [1, 2, 3, 4, 5, 6]),
        ("a", "deleted", 0, [1, 2, 3, 4, 5, 6]),
        ("b", "live", 0, [10, 20, 40, 80, 160]),
        ("c", "live", 0, list(range(1, 12))),
    ]
    left, want, report, rows, _ = await run_once(settings, GROUPS, bots, budget=30)
    assert left == want
    entry = report["resources"]["results_over_quota"]
    assert entry["deleted"] == entry["found"] == len(rows) - len(want)
    assert entry["over_quota"] == 7 + 6  # bot a: 10 results, quota 3; bot c: 11, quota 5
    budget = entry["budget"]
    assert (budget["before"], budget["limit"], budget["over_before"]) == (len(rows), 30, 8)
    assert budget["after"] == len(want) and budget["over_after"] == max(0, len(want) - 30)


async def test_a_dry_run_plans_exactly_what_its_plan_deletes(
    settings: Settings, store: Store
) -> None:
    bots = [("a", "live", 0, list(range(1, 9))), ("b", "live", 0, list(range(1, 9)))]
    rows, _ = await seed(store, bots)
    service = make_service(settings, store, Clock(NOW), policy=policy_of(GROUPS, budget=7))
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True)
    planned = dry["resources"]["results_over_quota"]["found"]
    assert await store.result_ids() == {r[0] for r in rows}
    # New results after the plan change neither the ranks it deletes by nor its budget.
    await store.bot(labels={"group": "b"}, results=5)
    real = await service.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    # Bot a: 5 beyond its quota of 3; the budget (7 of the 11 left) takes bot a's 3 (priority
    # 0) and bot b's oldest (priority 5).
    assert real["resources"]["results_over_quota"]["deleted"] == planned == 5 + 4
    audit = await store.audit(run_id=real["run_id"], kind="results_over_quota")
    reasons = {a["reason"] for a in audit}
    assert any("max_results_per_bot" in r for r in reasons)
    assert any("CLEANUP_RESULTS_BUDGET" in r for r in reasons)


drawn_groups = st.lists(
    st.builds(
        Group,
        name=st.just(""),
        quota=st.none() | st.integers(1, 6),
        floor=st.none() | st.integers(0, 6),
        priority=st.integers(-2, 2),
    ),
    min_size=1,
    max_size=3,
)


@given(
    groups=drawn_groups,
    draws=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["live", "live", "held", "deleted"]),
            st.integers(0, 0),
            st.lists(st.integers(0, 20), max_size=10),
        ),
        min_size=1,
        max_size=5,
    ),
    budget=st.none() | st.integers(0, 40),
)
@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_never_one_of_the_newest_n_never_below_a_floor(
    settings: Settings, groups: list[Group], draws: list[Any], budget: int | None
) -> None:
    groups = [
        Group(
            f"g{i}", g.quota, None if g.floor is None else min(g.floor, g.quota or 99), g.priority
        )
        for i, g in enumerate(groups)
    ]
    bots = [(groups[i % len(groups)].name, state, 0, ages) for i, state, _, ages in draws]
    left, want, _, rows, states = asyncio.run(run_once(settings, groups, bots, budget))
    assert left == want, (groups, bots, budget, rows, states)
    by_name = {g.name: g for g in groups}
    for bot_id, (group, _, _, _) in zip(states, bots, strict=True):
        mine = sorted(((at, rid) for rid, b, at in rows if b == bot_id), reverse=True)
        kept = {rid for _, rid in mine} & left
        g = by_name[group]
        if states[bot_id] != "live":
            assert kept == {rid for _, rid in mine}  # held or deleted: untouched
            continue
        if g.quota is not None:
            assert len(kept) <= g.quota
            if budget is None:  # the quota alone: the newest N stay (the budget may go lower)
                assert {rid for _, rid in mine[: g.quota]} == kept
        floor = min(g.floor or 0, g.quota or 99)
        assert {rid for _, rid in mine[:floor]} <= kept  # never below the floor
        assert not mine or mine[0][1] in kept  # nor without its newest result
    if budget is not None and len(left) > budget:
        # Still over: only because every live bot is down to its floor (or quota).
        for bot_id, (group, _, _, _) in zip(states, bots, strict=True):
            if states[bot_id] == "live":
                g = by_name[group]
                count = len([r for r in rows if r[1] == bot_id])
                floor = max(1, min(g.floor or 0, g.quota or 99))
                assert len({r[0] for r in rows if r[1] == bot_id} & left) == min(count, floor)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50M", (50_000_000, "rows")),
        ("1000", (1000, "rows")),
        ("20GB", (20 * 1024**3, "bytes")),
        ("512MiB", (512 * 1024**2, "bytes")),
        ("3k", (3000, "rows")),
    ],
)
def test_budget_values(text: str, expected: tuple[int, str]) -> None:
    from botfleet.config_types import parse_results_budget

    assert parse_results_budget(text) == expected


def test_a_bad_budget_names_the_variable() -> None:
    from botfleet.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(cleanup_results_budget="lots", admin_token="x" * 40)
    assert "CLEANUP_RESULTS_BUDGET" in str(caught.value)


def test_min_above_max_is_refused() -> None:
    from botfleet.cleanup.policy import PolicyError

    with pytest.raises(PolicyError, match="rule 1: field min_results_per_bot"):
        parse_rules({"rules": [{"max_results_per_bot": 2, "min_results_per_bot": 3}]})
