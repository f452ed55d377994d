"""Counters and histograms fed by every finished cleanup report (an observer of the service):
runs, durations, found/deleted/failed per kind, bytes reclaimed, deletion lag. Label values are
pre-created so that every series exists, at 0, from the first scrape."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from botfleet import constants

log = logging.getLogger(__name__)

TRIGGERS = (constants.TRIGGER_SCHEDULE, constants.TRIGGER_MANUAL, constants.TRIGGER_CLI)
FINISHED = (constants.RUN_SUCCEEDED, constants.RUN_PARTIAL, constants.RUN_FAILED)
DRY = ("true", "false")
STAGE_TOTAL = "total"
# bot_results go with their bots: they have no stage (nor a duration) of their own.
STAGES = (STAGE_TOTAL, *(k for k in constants.RESOURCE_KINDS if k != constants.KIND_BOT_RESULTS))
# Kinds whose removal frees storage (bot_results count with their bots; idle_bots soft-deletes).
RECLAIMING_KINDS = tuple(k for k in STAGES if k not in (STAGE_TOTAL, constants.KIND_IDLE_BOTS))

_RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_LAG_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


def metric_name(name: str, suffix: str) -> str:
    """prometheus_client appends _total itself: declare a counter without the exported suffix."""
    return name.removesuffix(suffix)


class CleanupMetrics:
    """Counters and histograms fed by every finished cleanup report."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            metric_name(constants.M_CLEANUP_RUNS, "_total"),
            "Finished cleanup runs by trigger, outcome and dry-run mode.",
            ["trigger", "status", "dry_run"],
            registry=registry,
        )
        self.duration = Histogram(
            constants.M_CLEANUP_DURATION,
            "Cleanup run duration; stage=total for the whole run, else per stage.",
            ["stage", "dry_run"],
            buckets=_RUN_BUCKETS,
            registry=registry,
        )
        self.found = Counter(
            metric_name(constants.M_CLEANUP_FOUND, "_total"),
            "Resources the policies selected, per kind (dry runs included, labelled).",
            ["kind", "dry_run"],
            registry=registry,
        )
        self.deleted = Counter(
            metric_name(constants.M_CLEANUP_DELETED, "_total"),
            "Resources really removed, per kind (never counts a failed delete).",
            ["kind"],
            registry=registry,
        )
        self.failed = Counter(
            metric_name(constants.M_CLEANUP_FAILED, "_total"),
            "Resources whose deletion failed, per kind.",
            ["kind"],
            registry=registry,
        )
        self.bytes_reclaimed = Counter(
            metric_name(constants.M_CLEANUP_BYTES_RECLAIMED, "_total"),
            "Storage recovered by real runs, per kind: containers' writable layers; database"
            " kinds' rows (SQLite: pages freed; PostgreSQL: deleted heap tuples).",
            ["kind"],
            registry=registry,
        )
        self.deletion_lag = Histogram(
            constants.M_CLEANUP_DELETION_LAG,
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
        for kind in constants.RESOURCE_KINDS:
            for dry in DRY:
                self.found.labels(kind, dry)
            self.deleted.labels(kind)
            self.failed.labels(kind)
            self.deletion_lag.labels(kind)
            if kind in RECLAIMING_KINDS:
                self.bytes_reclaimed.labels(kind)
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
        status = str(report.get("status", constants.RUN_FAILED))
        trigger = str(report.get("trigger", constants.TRIGGER_MANUAL))
        if trigger in TRIGGERS and status in FINISHED:
            self.runs.labels(trigger, status, dry).inc()
        started, finished = (
            parse_time(report.get("started_at")),
            parse_time(report.get("finished_at")),
        )
        if started and finished:
            seconds = max(0.0, (finished - started).total_seconds())
            self.duration.labels(STAGE_TOTAL, dry).observe(seconds)
        if status == constants.RUN_SUCCEEDED and finished:
            previous = self.last_success.get(dry == "true")
            self.last_success[dry == "true"] = max(finished, previous or finished)
        resources = report.get("resources") or {}
        for kind, stats in resources.items():
            if kind not in constants.RESOURCE_KINDS or not isinstance(stats, Mapping):
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
            if kind in RECLAIMING_KINDS:
                self.bytes_reclaimed.labels(kind).inc(_count(stats.get("bytes_reclaimed")))


def _count(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def parse_time(value: Any) -> datetime | None:
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
