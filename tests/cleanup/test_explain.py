"""``explain``: the rule, why, and when each resource is due — the same dates the decisions
use, held bots never due; and the endpoint that serves it (auth, 404, 422)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from botfleet.cleanup.explain import BotFacts, explain
from botfleet.cleanup.policy import Policy, parse_rules
from botfleet.cleanup.rules import ResultsBudget
from tests.support.store import Store, store

__all__ = ["store"]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(
    bot_retention_days=7,
    result_retention_days=30,
    results_budget=ResultsBudget(1000, "rows"),
    rules=parse_rules(
        {
            "rules": [
                {
                    "name": "ci",
                    "match": {"team": "ci"},
                    "bot_retention_days": {"exited": 1, "failed": 30},
                    "max_results_per_bot": 10,
                    "min_results_per_bot": 2,
                    "priority": -1,
                    "idle_after_days": 14,
                    "failing_after_days": 3,
                    "action": "soft_delete",
                },
            ]
        }
    ),
)


def facts(**kw: Any) -> BotFacts:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": "b",
        "labels": {"team": "ci"},
        "status": "running",
        "created_at": NOW - timedelta(days=100),
        "deleted_at": None,
        "status_at_deletion": None,
        "status_changed_at": NOW - timedelta(days=100),
        "results": 25,
        "oldest_result_at": NOW - timedelta(days=50),
        "last_result_at": NOW - timedelta(days=2),
    }
    return BotFacts(**(values | kw))


def test_a_deleted_failed_bot_is_purged_by_its_outcomes_retention() -> None:
    answer = explain(
        facts(deleted_at=NOW - timedelta(days=5), status_at_deletion="failed", status="deleted"),
        POLICY,
        NOW,
    )
    assert answer["rule"]["name"] == "ci" and "rule 1 (ci)" in answer["why"]
    assert answer["bot"]["purge_at"] == (NOW + timedelta(days=25)).isoformat()
    assert answer["bot"]["due_now"] is False and "30d" in answer["bot"]["retention"]
    assert answer["idle"] is None and answer["results"]["detail"] == "purged with the bot"


def test_a_live_bot_shows_its_quota_result_and_idle_dates() -> None:
    answer = explain(facts(), POLICY, NOW)
    results = answer["results"]
    assert (results["count"], results["max_results_per_bot"], results["over_quota"]) == (25, 10, 15)
    assert (results["min_results_per_bot"], results["priority"]) == (2, -1)
    assert results["oldest_due_at"] == (NOW - timedelta(days=20)).isoformat()
    idle = answer["idle"]
    assert idle["idle_at"] == (NOW + timedelta(days=12)).isoformat() and not idle["due_now"]
    assert answer["bot"]["purge_at"] is None and answer["live"] is True


def test_a_failing_bot_is_due_and_says_since_when() -> None:
    since = NOW - timedelta(days=4)
    answer = explain(facts(status="failed", status_changed_at=since), POLICY, NOW)
    assert answer["idle"]["failing_at"] == (since + timedelta(days=3)).isoformat()
    assert answer["idle"]["due_now"] is True
    assert answer["idle"]["detail"].startswith(f"failing since {since.isoformat()}")


def test_a_held_bot_is_never_due() -> None:
    held = {"team": "ci", "botfleet.hold": "true"}
    answer = explain(facts(labels=held, status="failed", last_result_at=None), POLICY, NOW)
    assert answer["held"] is True and "legal hold" in answer["why"]
    assert answer["results"]["over_quota"] == 0 and answer["results"]["oldest_due_at"] is None
    assert answer["idle"]["idle_at"] is None and answer["idle"]["due_now"] is False
    gone = explain(
        facts(labels=held, deleted_at=NOW - timedelta(days=90), status_at_deletion="exited"),
        POLICY,
        NOW,
    )
    assert gone["bot"]["purge_at"] is None and gone["bot"]["due_now"] is False


def test_no_rule_means_the_defaults() -> None:
    answer = explain(facts(labels={}), POLICY, NOW)
    assert answer["rule"] is None and "defaults apply" in answer["why"]
    assert answer["bot"]["retention"] == "default: 7d" and answer["idle"] is None


async def test_the_endpoint(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    bot_id = await store.bot(labels={"team": "x"}, results=3)
    answer = await client.get(f"/admin/cleanup/explain/{bot_id}", headers=admin_headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["bot_id"] == str(bot_id) and body["results"]["count"] == 3
    assert body["rule"] is None and body["bot"]["retention"] == "default: 7d"
    missing = await client.get(f"/admin/cleanup/explain/{uuid.uuid4()}", headers=admin_headers)
    assert missing.status_code == 404 and "detail" in missing.json()
    bad = await client.get("/admin/cleanup/explain/not-a-uuid", headers=admin_headers)
    assert bad.status_code == 422 and "bot_id" in bad.text
    unauthorised = await client.get(f"/admin/cleanup/explain/{bot_id}")
    assert unauthorised.status_code == 401
