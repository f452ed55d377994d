"""The scheduler: runs the cleanup service on a timer inside ``botfleet serve``.

One tick = one scheduled run (``trigger=schedule``) through the very same service that the API and
the CLI call. The loop survives anything: a failed tick is logged with context, counted, and
retried later (:mod:`botfleet.cleanup.timing`); a tick that finds another replica holding the
cleanup lock is skipped, not failed; circuit breakers (:mod:`botfleet.cleanup.breaker`) keep a dead
engine or database from being hammered. ``stop()`` asks the running run to end after its current
batch, so SIGTERM ends a run ``partial``/``interrupted`` within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from botfleet.cleanup.breaker import Breakers, apply_observation, observe_report
from botfleet.cleanup.failures import is_database_error
from botfleet.cleanup.ticks import (
    TICK_FAILED,
    TICK_LOCKED,
    TICK_OUTSIDE_WINDOW,
    TICK_RAN,
    TICK_SKIPPED,
    Tick,
    database_errors,
    failed_tick,
    outcome_of,
)
from botfleet.cleanup.timing import (
    NextRun,
    Streaks,
    TimingConfig,
    first_run,
    next_run,
)
from botfleet.config import Settings
from botfleet.constants import (
    DEPENDENCY_DATABASE,
    TRIGGER_SCHEDULE,
)
from botfleet.errors import CleanupInProgress
from botfleet.store.models import utcnow

log = logging.getLogger(__name__)

ACTOR = "schedule"
# How long stop() waits for the current batch to finish before cancelling the run outright.
STOP_TIMEOUT_SECONDS = 8.0
# After an unexpected error in the loop itself, wait this long before trying again.
LOOP_ERROR_PAUSE_SECONDS = 5.0


class CleanupRunner(Protocol):
    """What the scheduler needs of :class:`botfleet.cleanup.service.CleanupService`."""

    current_run_id: str | None  # the run this process holds the lock for, if any

    async def run(
        self,
        *,
        trigger: str,
        actor: str,
        dry_run: bool,
        skip_engines: frozenset[str] = ...,
    ) -> dict[str, Any]: ...

    def request_stop(self) -> None: ...

    async def breakers_changed(self, changes: Sequence[tuple[str, str, str | None]]) -> None: ...


class Scheduler:
    """Runs scheduled cleanups; an app :class:`~botfleet.services.Component`."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: CleanupRunner,
        engines: Sequence[str],
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.timing = TimingConfig.from_settings(settings)
        self._service = service
        self._engines = list(engines)
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop_timeout = stop_timeout
        self._archives = settings.cleanup_archive_dir is not None
        self.breakers = Breakers.for_cleanup(
            self._engines,
            archive=self._archives,
            threshold=settings.cleanup_breaker_threshold,
            cooldown=timedelta(seconds=settings.cleanup_breaker_cooldown_seconds),
        )
        self.streaks = Streaks()
        self.next: NextRun | None = None
        self.last_tick: Tick | None = None
        self.ticks = 0
        self._in_run = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- the Component -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping.clear()
        self.next = first_run(self._clock(), self.timing, self._rng)
        log.info(
            "cleanup scheduler started; first run at %s (%s)",
            self.next.at.isoformat(),
            self.next.reason,
        )
        self._task = asyncio.create_task(self._loop(), name="cleanup-scheduler")

    async def stop(self) -> None:
        """Ask a running run to end after its batch, wait a few seconds for it, then leave."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        if self._in_run:
            log.info("cleanup scheduler stopping: asking the current run to finish its batch")
            self._service.request_stop()
        done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
        if not done:
            log.warning("cleanup run did not stop within %.0fs; cancelling it", self._stop_timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.next = None
        log.info(
            "cleanup scheduler stopped after %d ticks; consecutive failures %d",
            self.ticks,
            self.streaks.failures,
        )

    # --- the loop ----------------------------------------------------------------------------
    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._wait_until_due()
                if self._stopping.is_set():
                    return
                tick = await self.tick()
                self.next = self.plan_after(tick)
                log.info(
                    "next scheduled cleanup at %s (%s)", self.next.at.isoformat(), self.next.reason
                )
            except Exception:
                # Nothing may end the loop but stop(): log with context and carry on.
                log.exception("cleanup scheduler loop error; carrying on")
                await self._sleep_unless_stopped(LOOP_ERROR_PAUSE_SECONDS)

    async def _wait_until_due(self) -> None:
        while not self._stopping.is_set():
            if self.next is None:
                self.next = first_run(self._clock(), self.timing, self._rng)
            delay = (self.next.at - self._clock()).total_seconds()
            if delay <= 0:
                return
            await self._sleep_unless_stopped(delay)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation and hang
        # shutdown (https://github.com/python/cpython/issues/86296).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def tick(self, *, respect_window: bool = False) -> Tick:
        """One scheduled cycle: check breakers, run, feed breakers and counters. Never raises.

        The loop only wakes inside the window; ``respect_window`` is for ``schedule --once``.
        """
        now = self._clock()
        self.ticks += 1
        window = self.timing.window
        if respect_window and window is not None and not window.contains(now):
            tick = Tick(TICK_OUTSIDE_WINDOW, now, reason=f"outside CLEANUP_WINDOW {window}")
            log.info("scheduled cleanup skipped: %s", tick.reason)
            return self._record(tick)
        archives = self._archives and not self.settings.cleanup_dry_run
        reason = self.breakers.why_not_run(now, archive=archives)
        if reason is not None:
            log.warning("scheduled cleanup skipped: %s", reason)
            return self._record(Tick(TICK_SKIPPED, now, reason=reason))
        engines = self._engines if self.settings.container_cleanup_enabled else []
        skip = self.breakers.blocked_engines(engines, now)
        if skip:
            log.warning("scheduled cleanup skips engines with an open breaker: %s", sorted(skip))
        hit_limit = False

        def time_limit() -> None:
            nonlocal hit_limit
            hit_limit = True
            log.warning(
                "scheduled cleanup reached CLEANUP_MAX_RUN_SECONDS=%g; stopping it after the "
                "current batch (the next run comes sooner)",
                self.settings.cleanup_max_run_seconds,
            )
            self._service.request_stop()

        limit = asyncio.get_running_loop().call_later(
            self.settings.cleanup_max_run_seconds, time_limit
        )
        self._in_run = True
        try:
            report = await self._service.run(
                trigger=TRIGGER_SCHEDULE,
                actor=ACTOR,
                dry_run=self.settings.cleanup_dry_run,
                skip_engines=skip,
            )
        except CleanupInProgress as exc:
            log.info("scheduled cleanup skipped: run %s holds the cleanup lock", exc.run_id)
            return self._record(Tick(TICK_LOCKED, now, reason=str(exc)))
        except Exception as exc:
            tick = failed_tick(now, exc)
            if is_database_error(exc):
                self.breakers.get(DEPENDENCY_DATABASE).failure(self._clock(), str(tick.reason))
            log.error("scheduled cleanup failed: %s", tick.reason, exc_info=exc)
            return self._record(tick)
        finally:
            self._in_run = False
            limit.cancel()
        used = [e for e in engines if e not in skip]
        archive_used = self._archives and not report.get("dry_run")
        changed = apply_observation(
            self.breakers,
            observe_report(report, engines_used=used, archive_used=archive_used),
            self._clock(),
        )
        await self._service.breakers_changed(self.breakers.opened_or_closed(changed))
        outcome = outcome_of(report, hit_time_limit=hit_limit)
        tick = Tick(TICK_RAN, now, report=report, outcome=outcome)
        if outcome.failed:
            log.warning(
                "scheduled cleanup run %s %s (database): %s",
                report.get("run_id"),
                report.get("status"),
                "; ".join(database_errors(report)) or "see the run's report",
            )
        return self._record(tick)

    def _record(self, tick: Tick) -> Tick:
        if tick.kind in (TICK_RAN, TICK_FAILED):
            self.streaks = self.streaks.after(tick.outcome)
        self.last_tick = tick
        return tick

    def plan_after(self, tick: Tick) -> NextRun:
        """When to run next, given what the tick did (its outcome is already in the streaks)."""
        now = self._clock()
        if tick.kind == TICK_LOCKED:
            # Another replica is cleaning right now: come back after a normal interval.
            return next_run(now, self.timing, Streaks(empty=self.streaks.empty), self._rng)
        reopens = self.breakers.get(DEPENDENCY_DATABASE).reopens_at()
        return next_run(now, self.timing, self.streaks, self._rng, not_before=reopens)

    # --- status ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._in_run

    def leader(self) -> bool:
        """Does this replica hold the cleanup lock right now (a run of its own, any trigger)?"""
        return self._service.current_run_id is not None

    def status(self) -> dict[str, Any]:
        settings = self.settings
        mode = (
            "off"
            if not settings.cleanup_enabled
            else ("dry_run" if settings.cleanup_dry_run else "active")
        )
        return {
            "next_run_at": self.next.at.isoformat() if self.next else None,
            "next_run_reason": self.next.reason if self.next else None,
            "consecutive_failures": self.streaks.failures,
            "breakers": self.breakers.snapshot(),
            "leader": self.leader(),
            "window": settings.cleanup_window,
            "timezone": settings.cleanup_timezone,
            "mode": mode,
            "adaptive": settings.cleanup_adaptive,
            "scheduled_run_in_progress": self._in_run,
            "last_tick": self.last_tick.summary() if self.last_tick else None,
        }
