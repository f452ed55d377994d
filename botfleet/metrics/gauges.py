"""Scrape-time gauges: the cached database/engine snapshot (:mod:`botfleet.metrics.snapshot`)
and the scheduler's in-memory state (breakers, next run, leadership), read when Prometheus
scrapes. Nothing here waits on I/O."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from botfleet import __version__, constants
from botfleet.backlog import BACKLOG_KINDS, ORPHAN_KINDS
from botfleet.cleanup.timing import longest_gap_seconds
from botfleet.config import Settings
from botfleet.metrics.runs import CleanupMetrics, parse_time
from botfleet.metrics.snapshot import SnapshotRefresher

log = logging.getLogger(__name__)


class StateCollector(Collector):
    """Scrape-time gauges: the cached snapshot and the scheduler's state. Reads memory only."""

    def __init__(
        self,
        *,
        settings: Settings,
        runs: CleanupMetrics,
        refresher: SnapshotRefresher,
        scheduler_status: Callable[[], Mapping[str, Any]],
    ) -> None:
        self._settings = settings
        self._runs = runs
        self._refresher = refresher
        self._scheduler_status = scheduler_status

    def describe(self) -> Iterable[Metric]:
        # Describing without collecting keeps registration from touching the snapshot.
        return []

    def collect(self) -> Iterable[Metric]:
        snap = self._refresher.snapshot
        settings = self._settings
        yield _gauge(
            constants.M_CLEANUP_DRY_RUN_MODE,
            "1 while CLEANUP_DRY_RUN makes scheduled runs plan only.",
            value=1.0 if settings.cleanup_dry_run else 0.0,
        )
        yield _gauge(
            constants.M_CLEANUP_SCHEDULER_ENABLED,
            "1 while CLEANUP_ENABLED runs scheduled cleanups.",
            value=1.0 if settings.cleanup_enabled else 0.0,
        )
        yield _gauge(
            constants.M_CLEANUP_INTERVAL,
            "Longest gap the scheduler plans between runs (interval, adaptive stretch, window).",
            value=longest_gap_seconds(settings),
        )
        bots = GaugeMetricFamily(constants.M_BOTS, "Bot records by status.", labels=["status"])
        counts = snap.bots if snap else {}
        for status in sorted(set(constants.BOT_STATUSES) | set(counts)):
            bots.add_metric([status], counts.get(status, 0))
        yield bots
        orphaned = GaugeMetricFamily(
            constants.M_ORPHANED, "Resources no live bot owns, per kind.", labels=["kind"]
        )
        backlog = GaugeMetricFamily(
            constants.M_BACKLOG,
            "Resources eligible for cleanup but not deleted yet.",
            labels=["kind"],
        )
        oldest = GaugeMetricFamily(
            constants.M_BACKLOG_OLDEST,
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
            constants.M_CLEANUP_LAST_SUCCESS,
            "When the last succeeded cleanup run finished (0 = never), by dry-run mode.",
            labels=["dry_run"],
        )
        for dry in (True, False):
            seen = [
                t
                for t in (self._runs.last_success.get(dry), snap and snap.last_success.get(dry))
                if t
            ]
            last.add_metric(["true" if dry else "false"], max(seen).timestamp() if seen else 0.0)
        yield last
        yield _gauge(
            constants.M_CLEANUP_CONSECUTIVE_FAILURES,
            "Newest finished runs that failed in a row (from the run history).",
            value=float(snap.consecutive_failures if snap else 0),
        )
        yield _gauge(
            constants.M_SNAPSHOT_TIMESTAMP,
            "When the database/engine snapshot behind the gauges was taken (0 = not yet).",
            value=snap.measured_at.timestamp() if snap else 0.0,
        )
        yield from self._scheduler()
        info = GaugeMetricFamily(constants.M_BUILD_INFO, "botfleet version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info

    def _scheduler(self) -> Iterable[Metric]:
        status = self._status()
        breakers = GaugeMetricFamily(
            constants.M_CLEANUP_BREAKER_STATE,
            "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open.",
            labels=["dependency"],
        )
        for dependency, state in sorted(_breakers(status).items()):
            breakers.add_metric([dependency], float(state))
        yield breakers
        next_run = parse_time(status.get("next_run_at")) if status else None
        yield _gauge(
            constants.M_CLEANUP_NEXT_RUN,
            "When the scheduler plans the next run (0 = none planned on this replica).",
            value=next_run.timestamp() if next_run else 0.0,
        )
        yield _gauge(
            constants.M_CLEANUP_LEADER,
            "1 on the replica whose scheduler leads (runs scheduled cleanups).",
            value=1.0 if status and status.get("leader") else 0.0,
        )

    def _status(self) -> Mapping[str, Any] | None:
        """The scheduler's in-memory state (a plain dict, cheap enough for a scrape)."""
        try:
            return self._scheduler_status()
        except Exception:
            log.exception("scheduler status failed")
            return None


def _gauge(name: str, doc: str, *, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _breakers(status: Mapping[str, Any] | None) -> dict[str, int]:
    raw = (status or {}).get("breakers") or {}
    out: dict[str, int] = {}
    if isinstance(raw, Mapping):
        for dependency, info in raw.items():
            state = info.get("state") if isinstance(info, Mapping) else getattr(info, "state", info)
            state = getattr(state, "value", state)
            out[str(dependency)] = constants.BREAKER_STATE_VALUES.get(str(state).lower(), 2)
    return out
