"""Why: which rule applies to one bot, and when each of its resources becomes due. Pure.

``botfleet policy explain BOT_ID`` and ``GET /admin/cleanup/explain/{bot_id}`` answer with
:func:`explain` of the bot's facts (read by :mod:`botfleet.cleanup.explain_facts`) under the
current policy; the dates come from the same decisions the runs take
(:mod:`botfleet.cleanup.eligibility`), so an explanation cannot promise what a run would not do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botfleet.cleanup.eligibility import BotRecord, LiveBot, bot_purge_decision, idle_decision
from botfleet.cleanup.policy import Policy, is_held
from botfleet.cleanup.rules import Rule, rule_to_json
from botfleet.constants import LABEL_HOLD, STATUS_FAILED


@dataclass(frozen=True)
class BotFacts:
    """What an explanation reads of one bot and its results."""

    id: str
    name: str
    labels: Mapping[str, Any]
    status: str
    created_at: datetime
    deleted_at: datetime | None
    status_at_deletion: str | None
    status_changed_at: datetime | None
    results: int
    oldest_result_at: datetime | None
    last_result_at: datetime | None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def explain(facts: BotFacts, policy: Policy, now: datetime) -> dict[str, Any]:
    """The rule, why it applies, and per resource: the policy's figure and when it is due."""
    rule = policy.rule_for(facts.labels)
    held = is_held(facts.labels)
    return {
        "bot_id": facts.id,
        "name": facts.name,
        "live": facts.deleted_at is None,
        "held": held,
        "rule": None if rule is None else rule_to_json(rule),
        "why": _why(rule, facts.labels, held),
        "bot": _bot(facts, policy, now, held),
        "results": _results(facts, policy, rule, now, held),
        "idle": _idle(facts, policy, rule, now, held),
    }


def _why(rule: Rule | None, labels: Mapping[str, Any], held: bool) -> str:
    hold = f"; on legal hold ({LABEL_HOLD}=true): nothing of it is ever deleted" if held else ""
    if rule is None:
        return "no rule matches its labels: the defaults apply" + hold
    if not rule.match:
        return f"{rule.label} matches every bot (first match wins)" + hold
    pairs = ", ".join(f"{k}={v}" for k, v in rule.match.items())
    return f"{rule.label} is the first rule whose labels it has ({pairs})" + hold


def _bot(facts: BotFacts, policy: Policy, now: datetime, held: bool) -> dict[str, Any]:
    outcome = facts.status_at_deletion
    retention = policy.bot_retention(facts.labels, outcome)
    out: dict[str, Any] = {"retention": retention.describe(), "outcome": outcome}
    if facts.deleted_at is None:
        out["purge_at"] = None
        out["detail"] = (
            "live: never purged while it lives; once deleted, kept "
            + ("forever" if retention.days is None else f"{retention.days}d")
            + " (by how it ends, where the rule says so)"
        )
        return out
    record = BotRecord(facts.id, facts.deleted_at, facts.labels, outcome)
    decision = bot_purge_decision(record, policy, now)
    due = None if retention.days is None or held else facts.deleted_at + timedelta(retention.days)
    out["purge_at"] = _iso(due)
    out["due_now"] = decision.eligible
    out["detail"] = decision.reason
    return out


def _results(
    facts: BotFacts, policy: Policy, rule: Rule | None, now: datetime, held: bool
) -> dict[str, Any]:
    retention = policy.result_retention(facts.labels)
    out: dict[str, Any] = {"count": facts.results, "retention": retention.describe()}
    if facts.deleted_at is not None:
        out["detail"] = "purged with the bot"
        return out
    due = None
    if retention.days is not None and facts.oldest_result_at is not None and not held:
        due = facts.oldest_result_at + timedelta(days=retention.days)
    out["oldest_due_at"] = _iso(due)
    quota = None if rule is None else rule.max_results_per_bot
    out["max_results_per_bot"] = quota
    out["over_quota"] = 0 if quota is None or held else max(0, facts.results - quota)
    out["min_results_per_bot"] = 0 if rule is None else rule.floor
    out["priority"] = 0 if rule is None else rule.priority
    out["budget"] = None if policy.results_budget is None else policy.results_budget.to_json()
    return out


def _idle(
    facts: BotFacts, policy: Policy, rule: Rule | None, now: datetime, held: bool
) -> dict[str, Any] | None:
    if rule is None or not rule.soft_deletes or facts.deleted_at is not None:
        return None
    bot = LiveBot(
        facts.id,
        facts.labels,
        facts.status,
        facts.created_at,
        facts.status_changed_at,
        facts.last_result_at,
    )
    out: dict[str, Any] = {
        "idle_after_days": rule.idle_after_days,
        "failing_after_days": rule.failing_after_days,
        "last_result_at": _iso(facts.last_result_at),
        "idle_at": None,
        "failing_at": None,
    }
    if rule.idle_after_days is not None and not held:
        since = facts.last_result_at or facts.created_at
        out["idle_at"] = _iso(since + timedelta(days=rule.idle_after_days))
    failed_since = facts.status_changed_at
    failing = rule.failing_after_days
    if failing is not None and facts.status == STATUS_FAILED and failed_since and not held:
        out["failing_at"] = _iso(failed_since + timedelta(days=failing))
    decision = idle_decision(bot, policy, now)
    out["due_now"] = decision.eligible
    out["detail"] = decision.reason
    return out
