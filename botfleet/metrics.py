"""Prometheus metrics, declared against the app's own registry (never the global default one).

Three sources feed ``GET /metrics``:

- finished cleanup reports (:meth:`Metrics.observe`, an observer of the cleanup service): runs,
  durations, found/deleted/failed per kind, bytes reclaimed, deletion lag;
- a snapshot of the database and engines (:mod:`botfleet.backlog`) for bots by status, orphans,
  backlog, last success and consecutive failures. A collector runs synchronously inside the scrape,
  so it only reads the cached snapshot; :class:`SnapshotRefresher` re-measures it in the
  background every ``SNAPSHOT_INTERVAL_SECONDS`` and right after each run. Every replica exports
  the same database-derived values, so alerts aggregate them with ``max``;
- the scheduler's in-memory state (breakers, next run, leadership), read at scrape time.

Label values are pre-created so that every series exists, at 0, from the first scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from botfleet import __version__
from botfleet import constants as c
from botfleet.backlog import BACKLOG_KINDS, ORPHAN_KINDS, Backlog, measure
from botfleet.config import Settings

if TYPE_CHECKING:
    from botfleet.app import Services

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_SECONDS = 30.0
SNAPSHOT_TIMEOUT_SECONDS = 20.0
TRIGGERS = (c.TRIGGER_SCHEDULE, c.TRIGGER_MANUAL, c.TRIGGER_CLI)
FINISHED = (c.RUN_SUCCEEDED, c.RUN_PARTIAL, c.RUN_FAILED)
DRY = ("true", "false")
STAGE_TOTAL = "total"
# bot_results go with their bots: they have no stage (nor a duration) of their own.
STAGES = (STAGE_TOTAL, *(k for k in c.RESOURCE_KINDS if k != c.KIND_BOT_RESULTS))
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"

_RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_LAG_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _metric(name: str, suffix: str) -> str:
    # prometheus_client appends _total / nothing itself: declare without the exported suffix.
    return name.removesuffix(suffix)


class CleanupMetrics:
    """Counters and histograms fed by every finished cleanup report."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            _metric(c.M_CLEANUP_RUNS, "_total"),
            "Finished cleanup runs by trigger, outcome and dry-run mode.",
            ["trigger", "status", "dry_run"],
            registry=registry,
        )
        self.duration = Histogram(
            c.M_CLEANUP_DURATION,
            "Cleanup run duration; stage=total for the whole run, else per stage.",
            ["stage", "dry_run"],
            buckets=_RUN_BUCKETS,
            registry=registry,
        )
        self.found = Counter(
            _metric(c.M_CLEANUP_FOUND, "_total"),
            "Resources the policies selected, per kind (dry runs included, labelled).",
            ["kind", "dry_run"],
            registry=registry,
        )
        self.deleted = Counter(
            _metric(c.M_CLEANUP_DELETED, "_total"),
            "Resources really removed, per kind (never counts a failed delete).",
            ["kind"],
            registry=registry,
        )
        self.failed = Counter(
            _metric(c.M_CLEANUP_FAILED, "_total"),
            "Resources whose deletion failed, per kind.",
            ["kind"],
            registry=registry,
        )
        self.bytes_reclaimed = Counter(
            _metric(c.M_CLEANUP_BYTES_RECLAIMED, "_total"),
            "Writable-layer bytes of the containers removed.",
            registry=registry,
        )
        self.deletion_lag = Histogram(
            c.M_CLEANUP_DELETION_LAG,
            "Time from a resource becoming eligible to its deletion, per kind.",
            ["kind"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        for trigger in TRIGGERS:
            for status in FINISHED:
                for dry in DRY:
                    self.runs.labels(trigger, status, dry)
        for stage in STAGES:
            for dry in DRY:
                self.duration.labels(stage, dry)
        for kind in c.RESOURCE_KINDS:
            for dry in DRY:
                self.found.labels(kind, dry)
            self.deleted.labels(kind)
            self.failed.labels(kind)
            self.deletion_lag.labels(kind)
        # The newest success this process saw; the snapshot holds the database's view.
        self.last_success: dict[bool, datetime] = {}

    def observe(self, report: Mapping[str, Any]) -> None:
        """Count one finished report; never raises (a metrics bug must not fail a cleanup)."""
        try:
            self._observe(report)
        except Exception:
            log.exception("metrics could not count report", extra={"run_id": report.get("run_id")})

    def _observe(self, report: Mapping[str, Any]) -> None:
        dry = "true" if report.get("dry_run") else "false"
        status = str(report.get("status", c.RUN_FAILED))
        trigger = str(report.get("trigger", c.TRIGGER_MANUAL))
        if trigger in TRIGGERS and status in FINISHED:
            self.runs.labels(trigger, status, dry).inc()
        started, finished = _time(report.get("started_at")), _time(report.get("finished_at"))
        if started and finished:
            seconds = max(0.0, (finished - started).total_seconds())
            self.duration.labels(STAGE_TOTAL, dry).observe(seconds)
        if status == c.RUN_SUCCEEDED and finished:
            previous = self.last_success.get(dry == "true")
            self.last_success[dry == "true"] = max(finished, previous or finished)
        resources = report.get("resources") or {}
        for kind, stats in resources.items():
            if kind not in c.RESOURCE_KINDS or not isinstance(stats, Mapping):
                continue
            self.found.labels(kind, dry).inc(_count(stats.get("found")))
            took = stats.get("duration_seconds")
            if kind in STAGES and isinstance(took, int | float) and took >= 0:
                self.duration.labels(kind, dry).observe(took)
            if dry == "true":
                continue
            self.deleted.labels(kind).inc(_count(stats.get("deleted")))
            self.failed.labels(kind).inc(_count(stats.get("failed")))
            for lag in stats.get("lag_seconds") or ():
                if isinstance(lag, int | float) and lag >= 0:
                    self.deletion_lag.labels(kind).observe(lag)
            if kind == c.KIND_CONTAINERS:
                self.bytes_reclaimed.inc(_count(stats.get("bytes_reclaimed")))


class HttpMetrics:
    """Request count and latency by route template (never by raw path: ids would explode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            _metric(c.M_HTTP_REQUESTS, "_total"),
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            c.M_HTTP_DURATION,
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=_HTTP_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)


class StateCollector(Collector):
    """Scrape-time gauges: the cached snapshot and the scheduler's state. Reads memory only."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterable[Metric]:
        # Describing without collecting keeps registration from touching the snapshot.
        return []

    def collect(self) -> Iterable[Metric]:
        m = self._m
        snap = m.snapshot
        settings = m.services.settings
        yield _gauge(
            c.M_CLEANUP_DRY_RUN_MODE,
            "1 while CLEANUP_DRY_RUN makes scheduled runs plan only.",
            value=1.0 if settings.cleanup_dry_run else 0.0,
        )
        yield _gauge(
            c.M_CLEANUP_SCHEDULER_ENABLED,
            "1 while CLEANUP_ENABLED runs scheduled cleanups.",
            value=1.0 if settings.cleanup_enabled else 0.0,
        )
        yield _gauge(
            c.M_CLEANUP_INTERVAL,
            "Longest gap the scheduler plans between runs (interval, adaptive stretch, window).",
            value=longest_gap_seconds(settings),
        )
        bots = GaugeMetricFamily(c.M_BOTS, "Bot records by status.", labels=["status"])
        counts = snap.bots if snap else {}
        for status in sorted(set(c.BOT_STATUSES) | set(counts)):
            bots.add_metric([status], counts.get(status, 0))
        yield bots
        orphaned = GaugeMetricFamily(
            c.M_ORPHANED, "Resources no live bot owns, per kind.", labels=["kind"]
        )
        backlog = GaugeMetricFamily(
            c.M_BACKLOG, "Resources eligible for cleanup but not deleted yet.", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            c.M_BACKLOG_OLDEST,
            "How long the oldest eligible resource has waited past its eligibility.",
            labels=["kind"],
        )
        for kind in ORPHAN_KINDS:
            orphaned.add_metric([kind], snap.orphaned.get(kind, 0) if snap else 0)
        for kind in BACKLOG_KINDS:
            backlog.add_metric([kind], snap.backlog.get(kind, 0) if snap else 0)
            oldest.add_metric([kind], snap.oldest_age_seconds.get(kind, 0.0) if snap else 0.0)
        yield from (orphaned, backlog, oldest)
        last = GaugeMetricFamily(
            c.M_CLEANUP_LAST_SUCCESS,
            "When the last succeeded cleanup run finished (0 = never), by dry-run mode.",
            labels=["dry_run"],
        )
        for dry in (True, False):
            seen = [
                t
                for t in (m.cleanup.last_success.get(dry), snap and snap.last_success.get(dry))
                if t
            ]
            last.add_metric(["true" if dry else "false"], max(seen).timestamp() if seen else 0.0)
        yield last
        yield _gauge(
            c.M_CLEANUP_CONSECUTIVE_FAILURES,
            "Newest finished runs that failed in a row (from the run history).",
            value=float(snap.consecutive_failures if snap else 0),
        )
        yield _gauge(
            c.M_SNAPSHOT_TIMESTAMP,
            "When the database/engine snapshot behind the gauges was taken (0 = not yet).",
            value=snap.measured_at.timestamp() if snap else 0.0,
        )
        yield from self._scheduler()
        info = GaugeMetricFamily(c.M_BUILD_INFO, "botfleet version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info

    def _scheduler(self) -> Iterable[Metric]:
        status = self._m.scheduler_status()
        breakers = GaugeMetricFamily(
            c.M_CLEANUP_BREAKER_STATE,
            "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open.",
            labels=["dependency"],
        )
        for dependency, state in sorted(_breakers(status).items()):
            breakers.add_metric([dependency], float(state))
        yield breakers
        next_run = _time(status.get("next_run_at")) if status else None
        yield _gauge(
            c.M_CLEANUP_NEXT_RUN,
            "When the scheduler plans the next run (0 = none planned on this replica).",
            value=next_run.timestamp() if next_run else 0.0,
        )
        yield _gauge(
            c.M_CLEANUP_LEADER,
            "1 on the replica whose scheduler leads (runs scheduled cleanups).",
            value=1.0 if status and status.get("leader") else 0.0,
        )


class SnapshotRefresher:
    """A Component that keeps :attr:`Metrics.snapshot` fresh without ever blocking a scrape."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        interval: float = SNAPSHOT_INTERVAL_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._m = metrics
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="metrics-snapshot")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """Ask for a fresh snapshot now (after a run); safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def refresh(self) -> Backlog | None:
        """Measure once; on failure keep the previous snapshot and count the error."""
        m = self._m
        async with self._lock:
            try:
                async with asyncio.timeout(SNAPSHOT_TIMEOUT_SECONDS):
                    snap = await measure(
                        m.services.sessions,
                        m.services.fleet,
                        m.services.settings,
                        now=self._clock(),
                    )
            except Exception as exc:
                m.snapshot_errors.inc()
                log.warning("metrics snapshot failed: %s", exc or type(exc).__name__)
                return None
            m.snapshot = snap
            return snap

    async def _run(self) -> None:
        while True:
            await self.refresh()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # arrives while it waits, and then stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()


class Metrics:
    """All of botfleet's metrics for one app; ``services.metrics``."""

    def __init__(
        self, services: Services, *, snapshot_interval: float = SNAPSHOT_INTERVAL_SECONDS
    ) -> None:
        registry = services.registry
        self.services = services
        self.registry = registry
        self.cleanup = CleanupMetrics(registry)
        self.http = HttpMetrics(registry)
        self.snapshot_errors = Counter(
            _metric(c.M_SNAPSHOT_ERRORS, "_total"),
            "Failed attempts to measure the database/engine snapshot.",
            registry=registry,
        )
        self.snapshot: Backlog | None = None
        self.refresher = SnapshotRefresher(self, interval=snapshot_interval)
        registry.register(StateCollector(self))

    def observe(self, report: Mapping[str, Any]) -> None:
        """The cleanup service's observer: count the report, then re-measure the backlog."""
        self.cleanup.observe(report)
        self.refresher.poke()

    def scheduler_status(self) -> dict[str, Any] | None:
        """The scheduler's in-memory state (a plain dict, cheap enough for a scrape)."""
        scheduler = self.services.scheduler
        if scheduler is None:
            return None
        try:
            status = scheduler.status()
        except Exception:
            log.exception("scheduler status failed")
            return None
        return dict(status) if isinstance(status, Mapping) else None


def install(services: Services) -> Metrics:
    """Build the app's metrics, set ``services.metrics`` and start the refresher with the app."""
    # The *_created series double every counter's output for no use in Prometheus (process-wide).
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = Metrics(services)
    services.metrics = metrics
    services.components.append(metrics.refresher)
    return metrics


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


def _gauge(name: str, doc: str, *, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _count(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def _breakers(status: Mapping[str, Any] | None) -> dict[str, int]:
    raw = (status or {}).get("breakers") or {}
    out: dict[str, int] = {}
    if isinstance(raw, Mapping):
        for dependency, info in raw.items():
            state = info.get("state") if isinstance(info, Mapping) else getattr(info, "state", info)
            state = getattr(state, "value", state)
            out[str(dependency)] = c.BREAKER_STATE_VALUES.get(str(state).lower(), 2)
    return out
