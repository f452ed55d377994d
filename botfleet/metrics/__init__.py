"""Prometheus metrics, declared against the app's own registry (never the global default one).

Three sources feed ``GET /metrics``:

- finished cleanup reports (:mod:`botfleet.metrics.runs`, an observer of the cleanup service);
- a snapshot of the database and engines (:mod:`botfleet.metrics.snapshot`), refreshed in the
  background and right after each run;
- the scheduler's in-memory state, read at scrape time (:mod:`botfleet.metrics.gauges`).

Plus HTTP request counts and latencies (:mod:`botfleet.metrics.http`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics

from botfleet.config import Settings
from botfleet.metrics.gauges import StateCollector
from botfleet.metrics.http import HttpMetrics
from botfleet.metrics.notify import NotifyMetrics
from botfleet.metrics.runs import CleanupMetrics
from botfleet.metrics.snapshot import SNAPSHOT_INTERVAL_SECONDS, SnapshotRefresher
from botfleet.runtime.fleet import Fleet
from botfleet.store.session import SessionFactory


class Metrics:
    """All of botfleet's metrics for one app (``services.metrics``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        settings: Settings,
        sessions: SessionFactory,
        fleet: Fleet,
        snapshot_interval: float = SNAPSHOT_INTERVAL_SECONDS,
    ) -> None:
        # The *_created series double every counter's output for no use in Prometheus
        # (process-wide).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.settings = settings
        self.cleanup = CleanupMetrics(registry)
        self.http = HttpMetrics(registry)
        self.notify = NotifyMetrics(registry)
        self.refresher = SnapshotRefresher(
            registry, settings=settings, sessions=sessions, fleet=fleet, interval=snapshot_interval
        )

    def observe(self, report: Mapping[str, Any]) -> None:
        """The cleanup service's observer: count the report, then re-measure the backlog."""
        self.cleanup.observe(report)
        self.refresher.poke()

    def watch(self, scheduler_status: Callable[[], Mapping[str, Any]]) -> None:
        """Register the scrape-time gauges, which read the scheduler built after the cleanup
        service (that this object observes)."""
        self.registry.register(
            StateCollector(
                settings=self.settings,
                runs=self.cleanup,
                refresher=self.refresher,
                scheduler_status=scheduler_status,
            )
        )
