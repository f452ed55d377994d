"""The pure decisions, table-driven: bot state x container state x age x label presence."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from botfleet.cleanup.eligibility import (
    BotRecord,
    bot_purge_decision,
    container_age,
    container_decision,
    result_decision,
)
from botfleet.cleanup.policy import Policy, Rule
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.runtime.base import ContainerInfo

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)
INSTANCE = "prod"
BOT_ID = "7b0c5bde-1c43-4b8e-9d47-2d7f9f4a8a01"

BOT_STATES = {
    "no row": None,
    "live": BotRecord(BOT_ID, None),
    "deleted recently": BotRecord(BOT_ID, NOW - timedelta(hours=1)),
    "deleted long ago": BotRecord(BOT_ID, NOW - timedelta(days=30)),
}
CONTAINER_STATES = ("created", "running", "exited", "dead", "paused", "restarting", "removing")
AGES = {"young": timedelta(minutes=2), "at grace": GRACE, "old": timedelta(hours=3)}
LABELS = {
    "ours": {LABEL_MANAGED: "true", LABEL_INSTANCE: INSTANCE, LABEL_BOT_ID: BOT_ID},
    "none": {},
    "other instance": {LABEL_MANAGED: "true", LABEL_INSTANCE: "staging", LABEL_BOT_ID: BOT_ID},
    "not managed": {LABEL_MANAGED: "false", LABEL_INSTANCE: INSTANCE, LABEL_BOT_ID: BOT_ID},
    "no bot id": {LABEL_MANAGED: "true", LABEL_INSTANCE: INSTANCE},
}


def container(state: str, age: timedelta, labels: dict[str, str]) -> ContainerInfo:
    """Age is measured from FinishedAt once stopped, from Created if it never started."""
    since = NOW - age
    started = state not in ("created",)
    return ContainerInfo(
        id="c" * 64,
        name="botfleet-x",
        engine="local",
        state=state,
        labels=labels,
        created_at=since - timedelta(hours=5) if started else since,
        started_at=since - timedelta(hours=4) if started else None,
        finished_at=since if state in ("exited", "dead") else None,
    )


def expected(bot: str, state: str, age: str, labels: str) -> bool:
    """Safety rule 2, written out independently of the code under test."""
    return (
        labels == "ours"
        and bot != "live"
        and state in ("created", "exited", "dead")
        and age in ("at grace", "old")
    )


TABLE = list(itertools.product(BOT_STATES, CONTAINER_STATES, AGES, LABELS))


@pytest.mark.parametrize(("bot", "state", "age", "labels"), TABLE)
def test_container_eligibility_table(bot: str, state: str, age: str, labels: str) -> None:
    decision = container_decision(
        container(state, AGES[age], LABELS[labels]),
        BOT_STATES[bot],
        instance=INSTANCE,
        grace=GRACE,
        now=NOW,
    )
    assert decision.eligible is expected(bot, state, age, labels), decision.reason
    assert decision.reason


@pytest.mark.parametrize(
    ("bot", "state", "age", "labels", "reason"),
    [
        ("live", "exited", "old", "ours", f"bot {BOT_ID} is live"),
        ("no row", "running", "old", "ours", "container is running"),
        ("deleted recently", "exited", "young", "ours", "younger than the grace period"),
        ("no row", "created", "young", "ours", "younger than the grace period"),
        ("no row", "exited", "old", "other instance", "not labelled for instance 'prod'"),
        ("no row", "exited", "old", "ours", "no bot row; exited for 3.0h"),
        ("deleted long ago", "dead", "old", "ours", f"bot {BOT_ID} is deleted; dead"),
    ],
)
def test_container_reasons(bot: str, state: str, age: str, labels: str, reason: str) -> None:
    decision = container_decision(
        container(state, AGES[age], LABELS[labels]),
        BOT_STATES[bot],
        instance=INSTANCE,
        grace=GRACE,
        now=NOW,
    )
    assert reason in decision.reason


def test_only_an_orphan_is_reported_as_skipped() -> None:
    """A live bot's own running container is not "skipped": nothing about it is amiss."""
    live = container_decision(
        container("running", AGES["old"], LABELS["ours"]),
        BOT_STATES["live"],
        instance=INSTANCE,
        grace=GRACE,
        now=NOW,
    )
    orphan = container_decision(
        container("running", AGES["old"], LABELS["ours"]),
        None,
        instance=INSTANCE,
        grace=GRACE,
        now=NOW,
    )
    assert not live.orphaned and orphan.orphaned


@pytest.mark.parametrize(
    ("state", "finished", "created", "age"),
    [
        ("exited", NOW - timedelta(minutes=3), NOW - timedelta(days=2), timedelta(minutes=3)),
        ("dead", None, NOW - timedelta(hours=1), timedelta(hours=1)),  # no FinishedAt
        ("created", None, NOW - timedelta(minutes=7), timedelta(minutes=7)),
    ],
)
def test_container_age(
    state: str, finished: datetime | None, created: datetime, age: timedelta
) -> None:
    info = ContainerInfo(
        id="x", name="x", engine="e", state=state, created_at=created, finished_at=finished
    )
    assert container_age(info, NOW) == age


def test_a_container_without_timestamps_is_kept() -> None:
    info = ContainerInfo(id="x", name="x", engine="e", state="exited", labels=LABELS["ours"])
    decision = container_decision(info, None, instance=INSTANCE, grace=GRACE, now=NOW)
    assert not decision.eligible and "age unknown" in decision.reason


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        bot_purge_decision(BotRecord(BOT_ID, None), Policy(7), datetime(2026, 1, 1))


POLICY = Policy(
    bot_retention_days=7,
    rules=(
        Rule(number=1, match={"env": "prod"}, bot_retention_days=30),
        Rule(number=2, match={"team": "x"}, keeps_bots=True),
        Rule(number=3, match={"tier": "fast"}, bot_retention_days=0),
    ),
)


@pytest.mark.parametrize(
    ("deleted_ago", "labels", "eligible", "reason"),
    [
        (None, {}, False, "bot is live"),
        (timedelta(days=6), {}, False, "within retention (default: 7d"),
        (timedelta(days=7), {}, False, "within retention"),  # exactly at the cutoff: kept
        (timedelta(days=7, seconds=1), {}, True, "expired: default: 7d"),
        (timedelta(days=29), {"env": "prod"}, False, "rule 1: 30d"),
        (timedelta(days=31), {"env": "prod"}, True, "rule 1: 30d"),
        (timedelta(days=400), {"team": "x"}, False, "kept forever by rule 2"),
        (timedelta(days=400), {"team": "x", "env": "prod"}, True, "rule 1"),  # first match
        (timedelta(seconds=1), {"tier": "fast"}, True, "rule 3: 0d"),
        (timedelta(days=30), {"botfleet.hold": "true"}, False, "legal hold"),
        (timedelta(days=-1), {}, False, "in the future"),
        (timedelta(days=-1), {"tier": "fast"}, False, "in the future"),
    ],
)
def test_bot_purge_table(
    deleted_ago: timedelta | None, labels: dict[str, str], eligible: bool, reason: str
) -> None:
    bot = BotRecord(BOT_ID, None if deleted_ago is None else NOW - deleted_ago, labels)
    decision = bot_purge_decision(bot, POLICY, NOW)
    assert decision.eligible is eligible
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("bot", "age", "eligible"),
    [
        (None, timedelta(days=99), False),  # orphaned: its own stage
        (BotRecord(BOT_ID, NOW), timedelta(days=99), False),  # goes with its bot
        (BotRecord(BOT_ID, None), timedelta(days=15), True),
        (BotRecord(BOT_ID, None), timedelta(days=13), False),
        (BotRecord(BOT_ID, None, {"botfleet.hold": "true"}), timedelta(days=99), False),
    ],
)
def test_result_retention(bot: BotRecord | None, age: timedelta, eligible: bool) -> None:
    policy = Policy(bot_retention_days=7, result_retention_days=14)
    assert result_decision(NOW - age, bot, policy, NOW).eligible is eligible
