"""Circuit breakers: open after N failures, skip while open, probe half-open, close on success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from botfleet.cleanup.breaker import (
    Breaker,
    Breakers,
    apply_observation,
    engine_dependency,
    observe_report,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
COOLDOWN = timedelta(seconds=60)


def breaker(threshold: int = 3) -> Breaker:
    return Breaker(threshold=threshold, cooldown=COOLDOWN)


def test_opens_after_threshold_consecutive_failures() -> None:
    b = breaker(3)
    for i in range(2):
        b.failure(T0 + timedelta(seconds=i), "refused")
        assert b.state == "closed" and b.allows(T0)
    b.failure(T0 + timedelta(seconds=2), "refused")
    assert b.state == "open"
    assert b.since == T0 + timedelta(seconds=2)
    assert b.last_error == "refused"
    assert not b.allows(T0 + timedelta(seconds=3))


def test_a_success_resets_the_count() -> None:
    b = breaker(2)
    b.failure(T0, "x")
    b.success(T0)
    b.failure(T0, "x")
    assert b.state == "closed"


@pytest.mark.parametrize(
    ("elapsed", "allowed", "state"),
    [
        (timedelta(seconds=0), False, "open"),
        (timedelta(seconds=59.9), False, "open"),
        (timedelta(seconds=60), True, "half_open"),
        (timedelta(hours=5), True, "half_open"),
    ],
)
def test_half_open_after_cooldown(elapsed: timedelta, allowed: bool, state: str) -> None:
    b = breaker(1)
    b.failure(T0, "down")
    assert b.reopens_at() == T0 + COOLDOWN
    assert b.allows(T0 + elapsed) is allowed
    assert b.state == state


def test_half_open_probe_success_closes_failure_reopens() -> None:
    b = breaker(3)
    for _ in range(3):
        b.failure(T0, "down")
    probe_at = T0 + COOLDOWN
    assert b.allows(probe_at)
    b.failure(probe_at, "still down")  # one failed probe is enough to re-open
    assert b.state == "open" and b.since == probe_at
    assert not b.allows(probe_at + COOLDOWN / 2)
    assert b.allows(probe_at + COOLDOWN)
    b.success(probe_at + COOLDOWN)
    assert b.snapshot() == {
        "state": "closed",
        "since": (probe_at + COOLDOWN).isoformat(),
        "failures": 0,
        "last_error": "still down",
    }


def test_blocked_engines_only_lists_open_ones() -> None:
    breakers = Breakers.for_dependencies(
        ["database", engine_dependency("a"), engine_dependency("b")],
        threshold=1,
        cooldown=COOLDOWN,
    )
    breakers.get(engine_dependency("b")).failure(T0, "refused")
    assert breakers.blocked_engines(["a", "b"], T0) == frozenset({"b"})
    assert breakers.blocked_engines(["a", "b"], T0 + COOLDOWN) == frozenset()
    assert breakers.snapshot()["engine:b"]["state"] == "half_open"


@pytest.mark.parametrize(
    ("errors", "engines_used", "expected"),
    [
        ([], ["a", "b"], {"database": None, "engine:a": None, "engine:b": None}),
        (
            [{"stage": "containers", "engine": "b", "message": "refused"}],
            ["a", "b"],
            {"database": None, "engine:a": None, "engine:b": "refused"},
        ),
        # A skipped engine's "error" says nothing about its health.
        (
            [{"stage": "containers", "engine": "b", "message": "skipped: breaker open"}],
            ["a"],
            {"database": None, "engine:a": None},
        ),
        (
            [{"stage": "bots", "dependency": "database", "message": "connection lost"}],
            [],
            {"database": "connection lost"},
        ),
        (["not a dict"], [], {"database": None}),
        # One container's failure is not the engine's.
        (
            [{"stage": "containers", "engine": "a", "message": "0123456789ab: APIError: 500"}],
            ["a"],
            {"database": None, "engine:a": None},
        ),
    ],
)
def test_observe_report(
    errors: list[object], engines_used: list[str], expected: dict[str, str | None]
) -> None:
    observation = observe_report({"errors": errors}, engines_used=engines_used)
    assert observation.outcomes == expected


def test_apply_observation_reports_state_changes() -> None:
    breakers = Breakers(threshold=1, cooldown=COOLDOWN)
    report = {"errors": [{"stage": "containers", "engine": "b", "message": "refused"}]}
    changed = apply_observation(breakers, observe_report(report, engines_used=["a", "b"]), T0)
    assert changed == ["engine:b"]
    assert breakers.get("engine:b").state == "open"
    assert breakers.get("engine:a").state == "closed"
    assert breakers.get("database").state == "closed"
