"""Retention by outcome, as a table: every rule form by how the bot ended by legal hold by a day
before, at and after its cutoff — the pure decision, the SQL selection and a real purge agree
with the retention the table states, on both backends."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from botfleet.bots import BotService
from botfleet.cleanup.database_selection import select_bots
from botfleet.cleanup.eligibility import BotRecord, bot_purge_decision
from botfleet.cleanup.policy import Policy, PolicyError, load_policy_file, parse_rules
from botfleet.cleanup.predicates import Dialect
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DEFAULT_DAYS = 7
NEVER = None
# Each rule form, as the file writes it, matched by the label form=<name>.
FORMS: dict[str, object] = {
    "number": 3,
    "never": "never",
    "by-outcome": {"exited": 1, "stopped": 5, "failed": 30},
    "partial": {"failed": 30},  # the other outcomes fall back to the global default
    "with-default": {"failed": 30, "default": 2},
    "never-failed": {"failed": "never", "exited": 1},
}
OUTCOMES = ("exited", "stopped", "failed", "running", None)  # running/None: no key
# The retention each (form, outcome) must get, in days; None: kept forever. "no-rule": the default.
EXPECTED: dict[str, dict[str | None, int | None]] = {
    "no-rule": dict.fromkeys(OUTCOMES, DEFAULT_DAYS),
    "number": dict.fromkeys(OUTCOMES, 3),
    "never": dict.fromkeys(OUTCOMES, NEVER),
    "by-outcome": {
        "exited": 1,
        "stopped": 5,
        "failed": 30,
        "running": DEFAULT_DAYS,
        None: DEFAULT_DAYS,
    },
    "partial": {
        "exited": DEFAULT_DAYS,
        "stopped": DEFAULT_DAYS,
        "failed": 30,
        "running": DEFAULT_DAYS,
        None: DEFAULT_DAYS,
    },
    "with-default": {"exited": 2, "stopped": 2, "failed": 30, "running": 2, None: 2},
    "never-failed": {
        "exited": 1,
        "stopped": DEFAULT_DAYS,
        "failed": NEVER,
        "running": DEFAULT_DAYS,
        None: DEFAULT_DAYS,
    },
}
# A day before the cutoff (kept), exactly at it (kept: the cutoff is exclusive), a day after.
BOUNDARIES = {"before": -1, "at": 0, "after": 1}
FOREVER_PROBE = 400  # for a bot kept forever: deleted this many days ago ± the boundary


def policy() -> Policy:
    rules = parse_rules(
        {"rules": [{"match": {"form": f}, "bot_retention_days": v} for f, v in FORMS.items()]}
    )
    return Policy(bot_retention_days=DEFAULT_DAYS, rules=rules)


def cases() -> list[tuple[str, str | None, bool, str]]:
    return list(itertools.product(EXPECTED, OUTCOMES, (False, True), BOUNDARIES))


def deleted_at(form: str, outcome: str | None, boundary: str) -> datetime:
    days = EXPECTED[form][outcome]
    return NOW - timedelta(days=(FOREVER_PROBE if days is None else days) + BOUNDARIES[boundary])


def expected_eligible(form: str, outcome: str | None, held: bool, boundary: str) -> bool:
    return not held and EXPECTED[form][outcome] is not None and boundary == "after"


def labels(form: str, held: bool) -> dict[str, str]:
    out = {} if form == "no-rule" else {"form": form}
    return out | ({"botfleet.hold": "true"} if held else {})


@pytest.mark.parametrize(("form", "outcome", "held", "boundary"), cases())
def test_the_pure_decision_follows_the_table(
    form: str, outcome: str | None, held: bool, boundary: str
) -> None:
    bot = BotRecord("b", deleted_at(form, outcome, boundary), labels(form, held), outcome)
    decision = bot_purge_decision(bot, policy(), NOW)
    assert decision.eligible is expected_eligible(form, outcome, held, boundary), decision.reason
    assert policy().bot_retention(bot.labels, outcome).days == EXPECTED[form][outcome]


async def test_selection_and_purge_follow_the_table(settings: Settings, store: Store) -> None:
    """Every case at once on this backend: the SQL selects exactly the table's eligible bots,
    the purge deletes exactly those, and each audit reason names the outcome's retention."""
    expected: dict[uuid.UUID, tuple[str, str | None]] = {}
    every: set[uuid.UUID] = set()
    for form, outcome, held, boundary in cases():
        bot_id = await store.bot(
            deleted_at=deleted_at(form, outcome, boundary),
            labels=labels(form, held),
            outcome=outcome,
        )
        every.add(bot_id)
        if expected_eligible(form, outcome, held, boundary):
            expected[bot_id] = (form, outcome)
    async with store.sessions() as session:
        bots, _ = await select_bots(session, Dialect(not settings.is_sqlite), policy(), NOW)
    assert bots.found == len(expected)
    service = make_service(settings, store, Clock(NOW), policy=policy())
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, only="bots")
    assert report["resources"]["bots"]["deleted"] == len(expected)
    assert await store.bots_left(every) == every - set(expected)
    reasons = {item["resource_id"]: item["reason"] for item in await store.audit(kind="bots")}
    for bot_id, (form, outcome) in expected.items():
        days = EXPECTED[form][outcome]
        assert reasons[str(bot_id)] == f"bots: expired ({source(form, outcome)}: {days}d)"


def source(form: str, outcome: str | None) -> str:
    """Where a retention comes from, as reports and audit records name it."""
    if form == "no-rule":
        return "default"
    rule = f"rule {list(FORMS).index(form) + 1}"
    value = FORMS[form]
    if not isinstance(value, dict):
        return rule
    if outcome in value:
        return f"{rule}, {outcome}"
    if "default" in value:
        return f"{rule}, default"
    named = outcome if outcome in ("exited", "stopped", "failed") else "other outcome"
    return f"{rule}, {named}: default"


async def test_the_outcome_is_kept_at_deletion_and_cleared_by_restore(store: Store) -> None:
    """The lifecycle's side: a soft delete records how the bot ended; restore's first step
    clears it, and undoing that step puts it back."""
    bots = BotService(sessions=store.sessions, fleet=Fleet([]), settings=store.settings)
    bot_id = await store.bot(status="failed", status_changed_at=NOW - timedelta(days=2))
    deleted = await bots.delete(bot_id, now=NOW)
    row = await bots.get(bot_id)
    assert (row.status, row.status_at_deletion, row.status_changed_at) == ("deleted", "failed", NOW)
    await bots._mark_live(deleted, NOW + timedelta(hours=1))
    row = await bots.get(bot_id)
    assert (row.deleted_at, row.status_at_deletion, row.status) == (None, None, "pending")
    await bots._mark_deleted_again(deleted)
    row = await bots.get(bot_id)
    assert (row.deleted_at, row.status_at_deletion) == (NOW, "failed")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"exited": 1, "crashed": 2}, "rule 1: field bot_retention_days has an unknown outcome"),
        ({}, "rule 1: field bot_retention_days accepts a mapping of exited, stopped, failed"),
        ({"failed": -1}, "rule 1: field bot_retention_days.failed accepts a whole number"),
        ({"failed": None}, "rule 1: field bot_retention_days.failed accepts a whole number"),
        ({"exited": "soon"}, "rule 1: field bot_retention_days.exited accepts"),
        ([1, 2], "rule 1: field bot_retention_days accepts a whole number of days >= 0"),
    ],
)
def test_bad_mappings_name_the_rule_and_field(value: object, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_rules({"rules": [{"bot_retention_days": value}]})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_mapping_survives_a_stored_plan(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "rules:\n  - match: {team: a}\n"
        "    bot_retention_days: {exited: 1, failed: never, default: 4}\n"
    )
    original = Policy(DEFAULT_DAYS, rules=load_policy_file(path))
    again = Policy.from_snapshot(original.snapshot())
    assert again == original
    assert again.bot_retention({"team": "a"}, "failed").days is None
    assert again.bot_retention({"team": "a"}, "stopped").days == 4
