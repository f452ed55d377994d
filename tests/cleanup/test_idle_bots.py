"""Idle and failing bots: the SQL selects exactly what idle_decision allows, at every boundary,
and the stage soft-deletes them — never purges, never a held bot — through dry run, stored
plan, the cap and the audit trail like every other kind."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botfleet.cleanup.eligibility import idle_decision
from botfleet.cleanup.idle_bots import idle_condition, live_bots, select_idle_bots
from botfleet.cleanup.policy import Policy, PolicyError, parse_rules
from botfleet.cleanup.predicates import Dialect, Fragment
from botfleet.config import Settings
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
IDLE, FAILING = 10, 3
RULES = parse_rules(
    {
        "rules": [
            # Shadows the rule below for its bots: first match wins, and it soft-deletes none.
            {"match": {"team": "keep"}, "bot_retention_days": 5},
            {
                "match": {},
                "idle_after_days": IDLE,
                "failing_after_days": FAILING,
                "action": "soft_delete",
                "bot_retention_days": 0,
            },
        ]
    }
)
POLICY = Policy(bot_retention_days=7, rules=RULES)
# Days ago: one day short of the rule's figure, exactly at it, one day past.
AROUND = {"before": -1, "at": 0, "after": 1}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def scenarios() -> list[dict[str, Any]]:
    out = []
    for labels, around, status, posted in itertools.product(
        ({}, {"team": "keep"}, {"botfleet.hold": "true"}),
        AROUND.values(),
        ("running", "failed", "exited"),
        (True, False),
    ):
        out.append(
            {
                "labels": labels,
                "status": status,
                "created_at": ago(IDLE + 30 if posted else IDLE + around),
                "result_times": [ago(IDLE + around)] if posted else [],
                "status_changed_at": ago(FAILING + around),
            }
        )
    return out


def expected(s: dict[str, Any]) -> bool:
    """The table, by hand: not shadowed, not held, and failed or silent past the cutoff."""
    if s["labels"]:
        return False
    failing = s["status"] == "failed" and s["status_changed_at"] < ago(FAILING)
    last = max(s["result_times"], default=None)
    idle = s["created_at"] < ago(IDLE) and (last is None or last < ago(IDLE))
    return failing or idle


async def seed(store: Store) -> dict[uuid.UUID, bool]:
    return {await store.bot(**s): expected(s) for s in scenarios()}


async def test_sql_and_decision_follow_the_table(settings: Settings, store: Store) -> None:
    bots = await seed(store)
    dialect = Dialect(not settings.is_sqlite)
    async with store.sessions() as session:
        every = await live_bots(session, Fragment("b.deleted_at IS NULL"), 10_000)
        cond = idle_condition(dialect, POLICY, NOW)
        chosen = await live_bots(
            session, Fragment(f"{cond.sql} AND NOT ({dialect.held('b')})", cond.binds), 10_000
        )
        sel, reasons = await select_idle_bots(session, dialect, POLICY, NOW)
    want = {str(i) for i, ok in bots.items() if ok}
    assert {b.id for b in chosen} == want
    assert {b.id for b in every if idle_decision(b, POLICY, NOW).eligible} == want
    assert sel.found == len(want) and set(sel.sample) <= want
    assert all(r["reason"].startswith(("idle: ", "failing since")) for r in reasons)
    held = [s["id"] for s in sel.skipped]
    assert held and all("legal hold" in s["reason"] for s in sel.skipped)


async def test_a_run_soft_deletes_and_never_purges(settings: Settings, store: Store) -> None:
    bots = await seed(store)
    service = make_service(settings, store, Clock(NOW), policy=POLICY)
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True)
    want = {str(i) for i, ok in bots.items() if ok}
    assert dry["resources"]["idle_bots"]["found"] == len(want)
    assert dry["resources"]["idle_bots"]["deleted"] == 0
    assert await store.bot_ids(live=True) == {str(i) for i in bots}  # a dry run changes nothing
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    entry = report["resources"]["idle_bots"]
    assert (entry["found"], entry["deleted"]) == (len(want), len(want))
    # Soft-deleted, not purged (even with bot_retention_days: 0), with the outcome kept.
    assert await store.bot_ids(live=False) == want
    assert report["resources"]["bots"]["deleted"] == 0
    rows = await store.rows("SELECT status_at_deletion FROM bots WHERE deleted_at IS NOT NULL")
    assert {r[0] for r in rows} <= {"running", "failed", "exited"}
    audit = await store.audit(run_id=report["run_id"], kind="idle_bots")
    assert {a["resource_id"] for a in audit} == want
    assert all("soft-deleted" in a["reason"] for a in audit)


async def test_a_bot_that_posts_after_the_plan_stays(settings: Settings, store: Store) -> None:
    quiet = await store.bot(created_at=ago(40))
    service = make_service(settings, store, Clock(NOW), policy=POLICY)
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True, only="idle_bots")
    assert dry["resources"]["idle_bots"]["found"] == 1
    async with store.sessions() as session, session.begin():
        from botfleet.store.models import Result

        session.add(Result(bot_id=quiet, created_at=NOW, data={}))
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    assert report["resources"]["idle_bots"]["deleted"] == 0
    assert str(quiet) in await store.bot_ids(live=True)


async def test_the_cap_refuses_the_stage(settings_factory: Any, store: Store) -> None:
    for _ in range(3):
        await store.bot(created_at=ago(40))
    settings = settings_factory(cleanup_max_deletions=2, container_cleanup_enabled=False)
    service = make_service(settings, store, Clock(NOW), policy=POLICY)
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    entry = report["resources"]["idle_bots"]
    assert (entry["found"], entry["deleted"], entry["outcome"]) == (3, 0, "refused")
    assert len(await store.bot_ids(live=True)) == 3


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"idle_after_days": 3}, "rule 1: field action is required with idle_after_days"),
        ({"idle_after_days": 0, "action": "soft_delete"}, "rule 1: field idle_after_days"),
        ({"failing_after_days": "2", "action": "soft_delete"}, "rule 1: field failing_after_days"),
        ({"idle_after_days": 3, "action": "purge"}, "rule 1: field action accepts soft_delete"),
        ({"action": "soft_delete", "bot_retention_days": 1}, "rule 1: field action needs"),
    ],
)
def test_bad_idle_rules_name_the_rule_and_field(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_rules({"rules": [rule]})
    assert message in str(caught.value)


async def test_each_soft_delete_writes_its_event_and_a_dry_run_none(
    settings: Settings, store: Store
) -> None:
    from tests.notify.test_delivery import notifier_for, outbox

    idle = await store.bot(created_at=ago(40), name="quiet-one", labels={"team": "x"})
    failing = await store.bot(created_at=ago(40), status="failed", status_changed_at=ago(5))
    await store.bot(created_at=ago(40), result_times=[ago(1)])  # posted lately: stays, no event
    recovers = await store.bot(created_at=ago(40))  # posts after the plan: stays, no event
    notifier = notifier_for(settings, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    service = make_service(settings, store, Clock(NOW), policy=POLICY, notifier=notifier)
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True, only="idle_bots")
    assert dry["resources"]["idle_bots"]["found"] == 3
    assert await outbox(store) == []  # a dry run writes nothing, events included
    async with store.sessions() as session, session.begin():
        from botfleet.store.models import Result

        session.add(Result(bot_id=recovers, created_at=NOW, data={}))
    report = await service.run(
        trigger="cli", actor="cli:t", dry_run=False, only="idle_bots", plan_id=dry["plan_id"]
    )
    assert report["resources"]["idle_bots"]["deleted"] == 2
    rows = [r for r in await outbox(store) if r.type == "io.botfleet.bot.soft_deleted"]
    assert (
        sorted(r.url for r in rows) == ["http://127.0.0.1:9/a"] * 2 + ["http://127.0.0.1:9/b"] * 2
    )
    documents = {r.event_id: json.loads(r.body) for r in rows}
    by_bot = {d["subject"]: d["data"] for d in documents.values()}
    assert set(by_bot) == {str(idle), str(failing)}
    quiet = by_bot[str(idle)]
    assert (quiet["why"], quiet["rule"]) == ("idle", f"rule 2: idle_after_days={IDLE}")
    assert quiet["reason"] == f"idle: no result since creation (rule 2: idle_after_days={IDLE})"
    assert (quiet["name"], quiet["labels"]) == ("quiet-one", {"team": "x"})
    assert quiet["restore"] == f"POST http://127.0.0.1:3001/bots/{idle}/restore"
    bad = by_bot[str(failing)]
    assert (bad["why"], bad["rule"]) == ("failing", f"rule 2: failing_after_days={FAILING}")
    assert bad["reason"].startswith(f"failing since {ago(5).isoformat()}")
    # The audit and the event tell the same story, and the event carries the deletion's time.
    audit = {a["resource_id"]: a for a in await store.audit(run_id=report["run_id"])}
    for bot_id, data in by_bot.items():
        assert audit[bot_id]["reason"] == f"idle_bots: soft-deleted, {data['reason']}"
    assert datetime.fromisoformat(quiet["deleted_at"]) == NOW  # the run's clock: its deleted_at
