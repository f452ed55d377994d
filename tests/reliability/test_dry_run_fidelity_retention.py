"""Dry-run fidelity for the advanced retention kinds: on a frozen store, a dry run of a policy
with retention by outcome, quotas, a budget with priorities and floors, and idle and failing
rules changes nothing but its own run record, and its plan, applied by ``plan_id``, deletes
exactly what it listed — the results a reference model computes from how the scene was built,
and the idle and failing bots chosen by hand — with held bots untouched.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from botfleet.cleanup.policy import Policy, parse_rules
from botfleet.cleanup.rules import ResultsBudget
from botfleet.config import Settings
from botfleet.constants import LABEL_HOLD
from botfleet.store.models import Result
from tests.cleanup.test_results_quota import expected_survivors
from tests.support.cleanup import Clock, make_service
from tests.support.figures import record_figure, scale
from tests.support.store import Store

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
# (quota, floor, priority) by group; the idle group soft-deletes silent or failing bots.
GROUPS = {"q": (5, None, 0), "p": (None, 3, 10), "f": (8, 2, -5)}


def policy(budget: int) -> Policy:
    rules: list[dict[str, Any]] = [
        {
            "match": {"group": "idle"},
            "idle_after_days": 10,
            "failing_after_days": 3,
            "action": "soft_delete",
            "bot_retention_days": {"failed": 30, "exited": 1},
        }
    ]
    for name, (quota, floor, prio) in GROUPS.items():
        rule: dict[str, Any] = {"match": {"group": name}, "priority": prio}
        if quota is not None:
            rule["max_results_per_bot"] = quota
        rule["min_results_per_bot"] = floor or 0
        rules.append(rule)
    return Policy(
        bot_retention_days=7,
        rules=parse_rules({"rules": rules}),
        results_budget=ResultsBudget(budget, "rows"),
    )


async def build(store: Store, rng: random.Random) -> tuple[set[str], Any, Any]:
    """The scene; returns the idle bots expected to go, every result, and each bot's terms."""
    idle: set[str] = set()
    rows: list[tuple[int, str, datetime]] = []
    terms: dict[str, tuple[int | None, int, int]] = {}
    for _ in range(rng.randint(6, 12)):
        group = rng.choice(list(GROUPS))
        held = rng.random() < 0.15
        labels = {"group": group} | ({LABEL_HOLD: "true"} if held else {})
        bot = await store.bot(labels=labels)
        if not held:
            quota, floor, prio = GROUPS[group]
            terms[str(bot)] = (quota, floor or 0, prio)
        async with store.sessions() as session, session.begin():
            made = [
                Result(bot_id=bot, created_at=NOW - timedelta(hours=rng.randint(1, 48)), data={})
                for _ in range(rng.randint(0, 15))
            ]
            session.add_all(made)
            await session.flush()
            rows += [(r.id, str(bot), r.created_at) for r in made]
    for _ in range(rng.randint(2, 5)):  # idle or failing, or neither, or held
        kind = rng.choice(["silent", "failing", "recent", "held"])
        labels = {"group": "idle"} | ({LABEL_HOLD: "true"} if kind == "held" else {})
        bot = await store.bot(
            labels=labels,
            created_at=NOW - timedelta(days=40),
            status="failed" if kind == "failing" else "running",
            status_changed_at=NOW - timedelta(days=5),
        )
        if kind in ("recent", "failing"):
            async with store.sessions() as session, session.begin():
                made = [Result(bot_id=bot, created_at=NOW - timedelta(days=1), data={})]
                session.add_all(made)
                await session.flush()
                rows += [(r.id, str(bot), r.created_at) for r in made]
        if kind in ("silent", "failing"):
            idle.add(str(bot))  # soft-deleted: its results stay with it
        elif kind == "recent":
            terms[str(bot)] = (None, 0, 0)  # live, no quota, no floor: the budget may take them
    for outcome in ("failed", "exited"):  # deleted bots: purged by their outcome's retention
        await store.bot(
            deleted_at=NOW - timedelta(days=5), outcome=outcome, labels={"group": "idle"}
        )
    return idle, rows, terms


async def test_the_plan_is_what_goes(settings: Settings) -> None:
    planned_total = deleted_total = mismatches = 0
    rounds = scale(3, 12)
    for round_ in range(rounds):
        rng = random.Random(round_)
        store = Store(settings)
        try:
            await store.wipe()
            idle, rows, terms = await build(store, rng)
            budget = rng.randint(10, 60)
            survivors = expected_survivors(rows, terms, budget)
            service = make_service(settings, store, Clock(NOW), policy=policy(budget))
            before = {t: await store.digest(t) for t in ("bots", "results", "cleanup_audit")}
            dry = await service.run(trigger="cli", actor="cli:t", dry_run=True)
            after = {t: await store.digest(t) for t in ("bots", "results", "cleanup_audit")}
            assert after == before, "the dry run changed something"
            res = dry["resources"]
            assert res["idle_bots"]["found"] == len(idle)
            assert set(res["idle_bots"]["sample"]) == idle
            # The exited bot (1 day) is due; the failed one (30 days) is not.
            assert res["bots"]["found"] == 1
            want_gone = {r[0] for r in rows} - survivors
            assert res["results_over_quota"]["found"] == len(want_gone)
            real = await service.run(
                trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"]
            )
            assert real["status"] == "succeeded", real["errors"]
            gone = {r[0] for r in rows} - await store.result_ids()
            soft_deleted = await store.bot_ids(live=False)
            assert gone == want_gone
            assert idle <= soft_deleted
            audited = set(map(int, await store.deleted_ids("results_over_quota")))
            assert audited == gone
            for kind in ("bots", "idle_bots", "results_over_quota"):
                planned, deleted = res[kind]["found"], real["resources"][kind]["deleted"]
                planned_total += planned
                deleted_total += deleted
                mismatches += int(planned != deleted)
            again = await service.run(trigger="cli", actor="cli:t", dry_run=True)
            assert again["resources"]["idle_bots"]["found"] == 0
            assert again["resources"]["results_over_quota"]["found"] == 0
        finally:
            await store.close()
    assert mismatches == 0
    record_figure(
        "dry_run_fidelity_retention",
        backend="sqlite" if settings.is_sqlite else "postgres",
        rounds=rounds,
        planned=planned_total,
        deleted=deleted_total,
        mismatches=mismatches,
        fidelity_percent=100.0 * deleted_total / planned_total if planned_total else 100.0,
    )
