"""Scenario 9, retention boundaries: ``deleted_at`` at cutoff - 1 s, cutoff, cutoff + 1 s, NULL and
in the future, on both backends, through a real run with a frozen clock — and the container grace
period at its own boundary on the real Docker Engine.

Purged means strictly older than the retention (design: "records *older than* BOT_RETENTION_DAYS"):
a bot deleted exactly at the cutoff stays. The invariant checker reads the rows back with SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botfleet.cleanup.eligibility import BotRecord, bot_purge_decision
from botfleet.cleanup.policy import Policy
from botfleet.config import Settings
from tests.support.cleanup import Clock, make_service
from tests.support.containers import (
    Containers,
    container_state,
    containers,
    docker_time,
    labels_for,
)
from tests.support.figures import record_figure
from tests.support.store import Store, store

__all__ = ["containers", "store"]

RETENTION_DAYS = 7
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=RETENTION_DAYS)
# name → (deleted_at, purged?)
BOUNDARY: dict[str, tuple[datetime | None, bool]] = {
    "cutoff - 1s": (CUTOFF - timedelta(seconds=1), True),
    "cutoff - 1ms": (CUTOFF - timedelta(milliseconds=1), True),
    "cutoff": (CUTOFF, False),
    "cutoff + 1ms": (CUTOFF + timedelta(milliseconds=1), False),
    "cutoff + 1s": (CUTOFF + timedelta(seconds=1), False),
    "NULL (live)": (None, False),
    "future (+1h)": (NOW + timedelta(hours=1), False),
    "future (+30d)": (NOW + timedelta(days=30), False),
}


async def test_deleted_at_boundaries_purge_strictly_older_than_the_cutoff(
    settings_factory: Callable[..., Settings], store: Store
) -> None:
    settings = settings_factory(bot_retention_days=RETENTION_DAYS, container_cleanup_enabled=False)
    ids = {
        name: await store.bot(deleted_at=deleted_at, results=3)
        for name, (deleted_at, _) in BOUNDARY.items()
    }
    expected_gone = {str(ids[name]) for name, (_, purged) in BOUNDARY.items() if purged}
    # The pure decision agrees with the table before any SQL is involved.
    policy = Policy.from_settings(settings)
    for name, (deleted_at, purged) in BOUNDARY.items():
        record = BotRecord(str(ids[name]), deleted_at)
        assert bot_purge_decision(record, policy, NOW).eligible is purged, name

    service = make_service(settings, store, Clock(NOW))
    dry = await service.run(trigger="cli", actor="test", dry_run=True)
    assert dry["resources"]["bots"]["found"] == len(expected_gone)
    assert set(dry["resources"]["bots"]["sample"]) == expected_gone
    report = await service.run(trigger="cli", actor="test", dry_run=False)
    assert report["status"] == "succeeded", report

    db = Store(settings, checker=True)
    try:
        left = await db.bot_ids()
        per_bot = await db.results_per_bot()
        audited = set(await db.deleted_ids("bots"))
    finally:
        await db.close()
    for name, (_, purged) in BOUNDARY.items():
        bot = str(ids[name])
        assert (bot not in left) is purged, f"{name}: purged={bot not in left}"
        assert per_bot.get(bot, 0) == (0 if purged else 3), name
    assert audited == expected_gone
    skipped = {s["id"]: s["reason"] for s in report["resources"]["bots"]["skipped"]}
    for name in ("future (+1h)", "future (+30d)"):
        assert "future" in skipped[str(ids[name])], skipped
    # The live bot is no candidate at all: it is neither deleted nor reported.
    assert str(ids["NULL (live)"]) not in skipped
    record_figure(
        "retention_boundaries",
        backend="sqlite" if settings.is_sqlite else "postgres",
        cases=len(BOUNDARY),
        wrong_decisions=0,
    )


@pytest.mark.parametrize(
    ("offset", "removed"),
    [(timedelta(seconds=-1), False), (timedelta(0), True), (timedelta(seconds=1), True)],
    ids=["grace-1s", "grace", "grace+1s"],
)
async def test_container_grace_boundary(
    settings_factory: Callable[..., Settings],
    store: Store,
    containers: Containers,
    instance: str,
    offset: timedelta,
    removed: bool,
) -> None:
    """A stopped container is left alone while it is *younger* than the grace period (at
    exactly the grace period it may go: tests/cleanup/test_eligibility.py fixes that edge)."""
    grace = timedelta(minutes=10)
    bot = await store.bot(deleted_at=NOW - timedelta(days=1))
    stopped = containers.make("exited", labels_for(instance, bot))
    finished = docker_time(containers.inspect(stopped)["State"]["FinishedAt"])
    settings = settings_factory(container_cleanup_grace_minutes=10)
    service = make_service(settings, store, Clock(finished + grace + offset))
    report = await service.run(trigger="cli", actor="test", dry_run=False, only="containers")
    stage: dict[str, Any] = report["resources"]["containers"]
    assert stage["deleted"] == int(removed), stage
    state = container_state(containers.client, stopped)
    assert (state is None) is removed, state
    if not removed:
        assert "younger than the grace period" in stage["skipped"][0]["reason"]
