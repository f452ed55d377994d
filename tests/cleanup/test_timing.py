"""Next-run timing (startup, interval, retry, window, adaptive) and the batch governor."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from botfleet.cleanup.timing import (
    BatchGovernor,
    FixedBatch,
    Outcome,
    Streaks,
    TimingConfig,
    Window,
    first_run,
    governor_for,
    next_run,
    retry_delay,
)
from tests.conftest import make_settings

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def config(**overrides: Any) -> TimingConfig:
    values: dict[str, Any] = {
        "interval": 6 * H,
        "startup_delay": timedelta(seconds=60),
        "retry": 5 * M,
        "min_interval": 15 * M,
        "max_interval": 24 * H,
        "max_run": H,
        "adaptive": True,
        "window": None,
        "jitter_fraction": 0.0,
    }
    values.update(overrides)
    return TimingConfig(**values)


def rng() -> random.Random:
    return random.Random(7)


def window(spec: str, tz: str = "UTC") -> Window:
    start, end = spec.split("-")
    return Window(time.fromisoformat(start), time.fromisoformat(end), ZoneInfo(tz))


def test_from_settings_reads_every_variable() -> None:
    settings = make_settings(
        cleanup_interval_hours=0.001,
        cleanup_retry_minutes=0.05,
        cleanup_startup_delay_seconds=0.5,
        cleanup_window="22:00-02:00",
        cleanup_timezone="Europe/Berlin",
        cleanup_adaptive=False,
    )
    cfg = TimingConfig.from_settings(settings)
    assert cfg.interval == timedelta(seconds=3.6)
    assert cfg.retry == timedelta(seconds=3)
    assert cfg.startup_delay == timedelta(seconds=0.5)
    assert cfg.adaptive is False
    assert str(cfg.window) == "22:00-02:00 Europe/Berlin"


def test_first_run_after_startup_delay() -> None:
    assert first_run(NOW, config(), rng()).at == NOW + timedelta(seconds=60)
    assert first_run(NOW, config(), rng()).reason == "startup"


@pytest.mark.parametrize(
    ("streaks", "delay", "reason"),
    [
        (Streaks(), 6 * H, "interval"),
        # Retry after CLEANUP_RETRY_MINUTES, doubling, never beyond the interval.
        (Streaks(failures=1), 5 * M, "retry"),
        (Streaks(failures=2), 10 * M, "retry"),
        (Streaks(failures=3), 20 * M, "retry"),
        (Streaks(failures=7), 320 * M, "retry"),
        (Streaks(failures=8), 6 * H, "retry"),
        (Streaks(failures=500), 6 * H, "retry"),
        # A backlogged run (time limit or deletion cap) brings the next one forward.
        (Streaks(backlog=1), 3 * H, "adaptive"),
        (Streaks(backlog=2), 1.5 * H, "adaptive"),
        (Streaks(backlog=9), 15 * M, "adaptive"),
        # Empty runs stretch the interval after three in a row, up to the maximum.
        (Streaks(empty=2), 6 * H, "interval"),
        (Streaks(empty=3), 12 * H, "adaptive"),
        (Streaks(empty=4), 24 * H, "adaptive"),
        (Streaks(empty=40), 24 * H, "adaptive"),
    ],
)
def test_next_run_delay(streaks: Streaks, delay: timedelta, reason: str) -> None:
    planned = next_run(NOW, config(), streaks, rng())
    assert (planned.at - NOW, planned.reason) == (delay, reason)


@pytest.mark.parametrize(
    ("overrides", "streaks", "delay", "reason"),
    [
        ({"adaptive": False}, Streaks(backlog=3), 6 * H, "interval"),
        ({"adaptive": False}, Streaks(empty=9), 6 * H, "interval"),
        # Bounds that leave no room: never slower than the interval for backlog, nor faster
        # for empty runs.
        ({"min_interval": 8 * H}, Streaks(backlog=1), 6 * H, "interval"),
        ({"max_interval": 2 * H}, Streaks(empty=5), 6 * H, "interval"),
        # Retry longer than the interval: capped at the interval.
        ({"retry": 9 * H}, Streaks(failures=1), 6 * H, "retry"),
        # Seconds-scale settings, as the tests of whole processes use.
        (
            {"interval": timedelta(seconds=2), "retry": timedelta(seconds=0.5)},
            Streaks(failures=2),
            timedelta(seconds=1),
            "retry",
        ),
    ],
)
def test_next_run_bounds(
    overrides: dict[str, Any], streaks: Streaks, delay: timedelta, reason: str
) -> None:
    planned = next_run(NOW, config(**overrides), streaks, rng())
    assert (planned.at - NOW, planned.reason) == (delay, reason)


def test_not_before_holds_the_run_back() -> None:
    later = NOW + 30 * M
    planned = next_run(NOW, config(), Streaks(failures=1), rng(), not_before=later)
    assert planned == next_run(NOW, config(), Streaks(failures=1), rng(), not_before=later)
    assert (planned.at, planned.reason) == (later, "retry")
    # An earlier not_before changes nothing.
    assert next_run(NOW, config(), Streaks(failures=1), rng(), not_before=NOW).at == NOW + 5 * M


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([Outcome(failed=True)] * 3, Streaks(failures=3)),
        ([Outcome(failed=True), Outcome()], Streaks()),
        ([Outcome(empty=True)] * 3, Streaks(empty=3)),
        ([Outcome(empty=True), Outcome(failed=True)], Streaks(failures=1, empty=1)),
        ([Outcome(backlog=True), Outcome(backlog=True), Outcome(empty=True)], Streaks(empty=1)),
    ],
)
def test_streaks(outcomes: list[Outcome], expected: Streaks) -> None:
    streaks = Streaks()
    for outcome in outcomes:
        streaks = streaks.after(outcome)
    assert streaks == expected


def test_retry_delay_doubles() -> None:
    cfg = config()
    assert [retry_delay(cfg, n) for n in (1, 2, 3, 4)] == [5 * M, 10 * M, 20 * M, 40 * M]


def test_jitter_is_small_positive_and_seedable() -> None:
    cfg = config(jitter_fraction=0.05)
    delays = [next_run(NOW, cfg, Streaks(), random.Random(seed)).at - NOW for seed in range(50)]
    assert all(6 * H <= d <= 6 * H + 5 * M for d in delays)
    assert len(set(delays)) > 40  # replicas spread out
    again = [next_run(NOW, cfg, Streaks(), random.Random(seed)).at - NOW for seed in range(50)]
    assert delays == again
    # Seconds-scale interval: jitter at most 5 % of it.
    small = config(interval=timedelta(seconds=2), jitter_fraction=0.05)
    d = next_run(NOW, small, Streaks(), random.Random(1)).at - NOW
    assert timedelta(seconds=2) <= d <= timedelta(seconds=2.1)


@pytest.mark.parametrize(
    ("spec", "tz", "at", "inside"),
    [
        ("01:00-05:00", "UTC", "2024-03-01T00:59:59+00:00", False),
        ("01:00-05:00", "UTC", "2024-03-01T01:00:00+00:00", True),
        ("01:00-05:00", "UTC", "2024-03-01T04:59:59+00:00", True),
        ("01:00-05:00", "UTC", "2024-03-01T05:00:00+00:00", False),
        ("22:00-02:00", "UTC", "2024-03-01T23:30:00+00:00", True),
        ("22:00-02:00", "UTC", "2024-03-01T01:59:00+00:00", True),
        ("22:00-02:00", "UTC", "2024-03-01T02:00:00+00:00", False),
        ("22:00-02:00", "UTC", "2024-03-01T21:59:00+00:00", False),
        # 01:30 in Berlin (UTC+1 in winter) is 00:30 UTC.
        ("01:00-05:00", "Europe/Berlin", "2024-03-01T00:30:00+00:00", True),
        ("01:00-05:00", "Europe/Berlin", "2024-03-01T04:30:00+00:00", False),
        ("03:00-03:00", "UTC", "2024-03-01T12:00:00+00:00", True),
    ],
)
def test_window_contains(spec: str, tz: str, at: str, inside: bool) -> None:
    assert window(spec, tz).contains(datetime.fromisoformat(at)) is inside


@pytest.mark.parametrize(
    ("spec", "tz", "now", "delay", "expected"),
    [
        # Inside the window: the interval stands.
        ("01:00-05:00", "UTC", "2024-03-01T01:00:00", 1 * H, "2024-03-01T02:00:00+00:00"),
        # Lands after the window closes: tomorrow's opening.
        ("01:00-05:00", "UTC", "2024-03-01T01:00:00", 6 * H, "2024-03-02T01:00:00+00:00"),
        # Lands before it opens the same day.
        ("01:00-05:00", "UTC", "2024-02-29T18:00:00", 6 * H, "2024-03-01T01:00:00+00:00"),
        # A window across midnight, landing in the afternoon: the same evening.
        ("22:00-02:00", "UTC", "2024-03-01T08:00:00", 6 * H, "2024-03-01T22:00:00+00:00"),
        # ... landing at 03:00: the evening of that day.
        ("22:00-02:00", "UTC", "2024-03-01T21:00:00", 6 * H, "2024-03-02T22:00:00+00:00"),
        # Local time: 01:00 in New York (UTC-5 in winter) is 06:00 UTC.
        ("01:00-05:00", "America/New_York", "2024-03-01T12:00:00", 6 * H,
         "2024-03-02T06:00:00+00:00"),
        # Across the DST change (10 March 2024 in New York): 01:00 EDT-less night is UTC-5,
        # the next night 01:00 is UTC-4.
        ("01:00-05:00", "America/New_York", "2024-03-10T12:00:00", 6 * H,
         "2024-03-11T05:00:00+00:00"),
    ],
)  # fmt: skip
def test_window_moves_the_run(
    spec: str, tz: str, now: str, delay: timedelta, expected: str
) -> None:
    start = datetime.fromisoformat(now).replace(tzinfo=UTC)
    cfg = config(interval=delay, window=window(spec, tz))
    planned = next_run(start, cfg, Streaks(), rng())
    assert planned.at == datetime.fromisoformat(expected)
    inside = start + delay == planned.at
    assert planned.reason == ("interval" if inside else "window")


def test_startup_respects_the_window() -> None:
    cfg = config(window=window("01:00-05:00"))
    planned = first_run(NOW, cfg, rng())
    assert (planned.at, planned.reason) == (datetime(2024, 3, 2, 1, tzinfo=UTC), "window")


def test_window_jitter_spreads_replicas_inside_the_window() -> None:
    cfg = config(window=window("01:00-05:00"), jitter_fraction=0.05)
    starts = {first_run(NOW, cfg, random.Random(s)).at for s in range(20)}
    opening = datetime(2024, 3, 2, 1, tzinfo=UTC)
    assert len(starts) > 1
    assert all(opening <= s <= opening + 5 * M for s in starts)


# --- the batch governor -------------------------------------------------------------------------
def test_governor_shrinks_on_slow_batches_and_pauses() -> None:
    g = BatchGovernor(max_size=1000, slow_seconds=1.0, fast_seconds=0.25, max_pause_seconds=2)
    assert g.next_size() == 1000
    g.observe(1.5, 1000)
    assert g.pause_seconds == 1.5
    assert g.next_size() == 500 and g.busy
    g.observe(5.0, 500)
    assert g.pause_seconds == 2.0  # bounded
    assert g.next_size() == 250
    for _ in range(20):
        g.observe(3.0, g.next_size())
    assert g.next_size() == g.min_size == 31


def test_governor_grows_back_on_fast_full_batches() -> None:
    g = BatchGovernor(max_size=1000, slow_seconds=1.0, fast_seconds=0.25)
    g.observe(2.0, 1000)
    g.observe(2.0, 500)
    assert g.next_size() == 250
    g.observe(0.3, 250)  # neither slow nor fast: hold, and no more pauses
    assert g.pause_seconds == 0.0
    assert g.next_size() == 250
    g.observe(0.1, 100)  # fast but a short (last) batch: no evidence, hold
    assert g.next_size() == 250
    g.observe(0.1, 250)
    g.observe(0.1, 500)
    g.observe(0.1, 1000)
    assert g.next_size() == 1000 and not g.busy


def test_governor_from_settings() -> None:
    governor = governor_for(make_settings(cleanup_batch_size=50))
    assert isinstance(governor, BatchGovernor)
    assert governor.next_size() == 50 and governor.min_size == 1
    fixed = governor_for(make_settings(cleanup_adaptive=False, cleanup_batch_size=70))
    assert isinstance(fixed, FixedBatch) and fixed.next_size() == 70 and fixed.pause_seconds == 0
    with pytest.raises(ValueError, match="max_size"):
        BatchGovernor(max_size=0)
