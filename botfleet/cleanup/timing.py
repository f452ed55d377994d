"""When the next scheduled run happens, and why; how big the next batch is. Pure: ``now`` is input.

The scheduler asks :func:`first_run` once and :func:`next_run` after every tick. Each answer carries
its reason (startup, interval, retry, window, adaptive) so the status endpoint can explain itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from botfleet.config import Settings
from botfleet.constants import (
    REASON_ADAPTIVE,
    REASON_INTERVAL,
    REASON_RETRY,
    REASON_STARTUP,
    REASON_WINDOW,
)

# Replicas that start together must not fire together: up to 5 % later, never more than 5 min.
JITTER_FRACTION = 0.05
JITTER_CAP = timedelta(minutes=5)
# This many runs in a row that found nothing before the interval starts to stretch.
EMPTY_RUNS_BEFORE_STRETCH = 3
_MAX_DOUBLINGS = 20


@dataclass(frozen=True)
class Window:
    """An off-peak window of local wall-clock time; ``22:00-02:00`` crosses midnight."""

    start: time
    end: time
    tz: ZoneInfo

    def contains(self, at: datetime) -> bool:
        t = at.astimezone(self.tz).time()
        if self.start == self.end:  # a 24-hour window
            return True
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def next_open(self, at: datetime) -> datetime:
        """``at`` if the window is open then, else the next time it opens (UTC)."""
        if self.contains(at):
            return at
        day = at.astimezone(self.tz).date()
        starts = (
            datetime.combine(day + timedelta(days=offset), self.start, tzinfo=self.tz).astimezone(
                UTC
            )
            for offset in (-1, 0, 1, 2)
        )
        return min(s for s in starts if s >= at)

    def length(self) -> timedelta:
        start = datetime.combine(datetime.min.date(), self.start)
        end = datetime.combine(datetime.min.date(), self.end)
        span = end - start
        return span if span > timedelta(0) else span + timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.tz.key}"


@dataclass(frozen=True)
class TimingConfig:
    interval: timedelta
    startup_delay: timedelta
    retry: timedelta
    min_interval: timedelta
    max_interval: timedelta
    max_run: timedelta
    adaptive: bool = True
    window: Window | None = None
    jitter_fraction: float = JITTER_FRACTION

    @classmethod
    def from_settings(cls, settings: Settings) -> TimingConfig:
        bounds = settings.window_bounds
        window = (
            Window(bounds[0], bounds[1], ZoneInfo(settings.cleanup_timezone)) if bounds else None
        )
        return cls(
            interval=timedelta(hours=settings.cleanup_interval_hours),
            startup_delay=timedelta(seconds=settings.cleanup_startup_delay_seconds),
            retry=timedelta(minutes=settings.cleanup_retry_minutes),
            min_interval=timedelta(minutes=settings.cleanup_min_interval_minutes),
            max_interval=timedelta(hours=settings.cleanup_max_interval_hours),
            max_run=timedelta(seconds=settings.cleanup_max_run_seconds),
            adaptive=settings.cleanup_adaptive,
            window=window,
        )


@dataclass(frozen=True)
class Outcome:
    """What a finished tick means for timing."""

    failed: bool = False
    empty: bool = False  # the run found nothing to clean
    backlog: bool = False  # it hit CLEANUP_MAX_RUN_SECONDS or its deletion cap: more is waiting


@dataclass(frozen=True)
class Streaks:
    """Counts of like outcomes in a row; the scheduler's only timing memory."""

    failures: int = 0
    empty: int = 0
    backlog: int = 0

    def after(self, outcome: Outcome) -> Streaks:
        if outcome.failed:
            return replace(self, failures=self.failures + 1)
        return Streaks(
            failures=0,
            empty=self.empty + 1 if outcome.empty else 0,
            backlog=self.backlog + 1 if outcome.backlog else 0,
        )


@dataclass(frozen=True)
class NextRun:
    at: datetime
    reason: str


def retry_delay(cfg: TimingConfig, failures: int) -> timedelta:
    """CLEANUP_RETRY_MINUTES after the first failure, doubling each time, at most the interval."""
    doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
    backoff: timedelta = cfg.retry * 2**doublings
    return min(backoff, cfg.interval)


def base_delay(cfg: TimingConfig, streaks: Streaks) -> tuple[timedelta, str]:
    """The delay before jitter and window, with its reason."""
    if streaks.failures:
        return retry_delay(cfg, streaks.failures), REASON_RETRY
    delay = cfg.interval
    if cfg.adaptive and streaks.backlog:
        # Work is piling up: halve the interval per backlogged run, down to the minimum.
        shorter = cfg.interval / 2 ** min(streaks.backlog, _MAX_DOUBLINGS)
        delay = min(cfg.interval, max(cfg.min_interval, shorter))
    elif cfg.adaptive and streaks.empty >= EMPTY_RUNS_BEFORE_STRETCH:
        # Nothing to do, again and again: double per further empty run, up to the maximum.
        doublings = min(streaks.empty - EMPTY_RUNS_BEFORE_STRETCH + 1, _MAX_DOUBLINGS)
        delay = max(cfg.interval, min(cfg.max_interval, cfg.interval * 2**doublings))
    return delay, REASON_ADAPTIVE if delay != cfg.interval else REASON_INTERVAL


def jitter(span: timedelta, fraction: float, rng: random.Random) -> timedelta:
    return min(span * fraction, JITTER_CAP) * rng.random()


def _place(
    now: datetime, delay: timedelta, reason: str, cfg: TimingConfig, rng: random.Random
) -> NextRun:
    at = now + delay + jitter(delay, cfg.jitter_fraction, rng)
    if cfg.window is None or cfg.window.contains(at):
        return NextRun(at, reason)
    opens = cfg.window.next_open(at)
    return NextRun(opens + jitter(cfg.window.length(), cfg.jitter_fraction, rng), REASON_WINDOW)


def first_run(now: datetime, cfg: TimingConfig, rng: random.Random) -> NextRun:
    """The first scheduled run after start: CLEANUP_STARTUP_DELAY_SECONDS, then the window."""
    return _place(now, cfg.startup_delay, REASON_STARTUP, cfg, rng)


def next_run(
    now: datetime,
    cfg: TimingConfig,
    streaks: Streaks,
    rng: random.Random,
    *,
    not_before: datetime | None = None,
) -> NextRun:
    """The run after a tick whose outcome ``streaks`` already counts.

    ``not_before`` holds the run back (e.g. until an open database breaker lets a probe through).
    """
    delay, reason = base_delay(cfg, streaks)
    if not_before is not None and now + delay < not_before:
        delay = not_before - now
    return _place(now, delay, reason, cfg, rng)


class Governor(Protocol):
    """Batch sizing: asked before every batch, told after; ``pause_seconds`` is how long the
    batch loop waits before the next batch (live traffic goes first)."""

    pause_seconds: float

    def next_size(self) -> int: ...

    def observe(self, seconds: float, rows: int) -> None: ...


@dataclass
class FixedBatch:
    """CLEANUP_ADAPTIVE=false: ``CLEANUP_BATCH_SIZE`` rows per transaction, never a pause."""

    size: int
    pause_seconds: float = 0.0

    def next_size(self) -> int:
        return self.size

    def observe(self, seconds: float, rows: int) -> None:
        return None


def governor_for(settings: Settings) -> Governor:
    """Adaptive batches (CLEANUP_ADAPTIVE, the default) or fixed ones."""
    if settings.cleanup_adaptive:
        return BatchGovernor(max_size=settings.cleanup_batch_size)
    return FixedBatch(settings.cleanup_batch_size)


@dataclass
class BatchGovernor:
    """Adapts the executor's batch size to how busy the database looks.

    The signal is the batch's own duration: a delete transaction that takes longer than
    ``slow_seconds`` is waiting on locks or I/O that live traffic needs too, so the next batch is
    half the size and the executor pauses as long as the slow batch took (bounded). Fast, full
    batches double the size back up to ``max_size`` (CLEANUP_BATCH_SIZE).
    """

    max_size: int
    min_size: int = 0
    slow_seconds: float = 1.0
    fast_seconds: float = 0.25
    max_pause_seconds: float = 2.0
    size: int = 0
    pause_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.min_size = self.min_size or max(1, self.max_size // 32)
        self.min_size = min(self.min_size, self.max_size)
        self.size = self.size or self.max_size

    @property
    def busy(self) -> bool:
        return self.size < self.max_size

    def next_size(self) -> int:
        return self.size

    def observe(self, seconds: float, rows: int) -> None:
        """Record one batch; ``pause_seconds`` then says how long to wait before the next."""
        if seconds >= self.slow_seconds:
            self.size = max(self.min_size, self.size // 2)
            self.pause_seconds = min(self.max_pause_seconds, seconds)
        else:
            self.pause_seconds = 0.0
            if seconds <= self.fast_seconds and rows >= self.size:
                self.size = min(self.max_size, self.size * 2)


def longest_gap_seconds(settings: Settings) -> float:
    """How long the scheduler may wait between runs: alerts compare against twice this."""
    gap = timedelta(hours=settings.cleanup_interval_hours)
    if settings.cleanup_adaptive:
        # Runs that find nothing stretch the interval up to CLEANUP_MAX_INTERVAL_HOURS.
        gap = max(gap, timedelta(hours=settings.cleanup_max_interval_hours))
    bounds = settings.window_bounds
    if bounds is not None:
        # A run due while the window is closed waits for it to open again.
        start, end = (datetime.combine(datetime.min.date(), t) for t in bounds)
        closed = (start - end) % timedelta(days=1)
        gap += closed
    return gap.total_seconds()
