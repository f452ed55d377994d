"""The notification sender's metrics: deliveries by outcome, the outbox's depth and the age of
its oldest pending entry (measured by every replica's sender after each pass, so every replica
exports the same values: alerts aggregate with ``max``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from botfleet import constants
from botfleet.metrics.runs import metric_name

OUTCOMES = ("delivered", "failed", "expired")


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            metric_name(constants.M_NOTIFY_DELIVERIES, "_total"),
            "Notification delivery attempts by outcome (failed: will be retried; expired: "
            "given up).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.deliveries.labels(outcome)
        self.pending = Gauge(
            constants.M_NOTIFY_OUTBOX_DEPTH,
            "Notification outbox entries not delivered yet.",
            registry=registry,
        )
        self.oldest = Gauge(
            constants.M_NOTIFY_OLDEST,
            "Age of the oldest notification outbox entry not delivered yet (0 when none).",
            registry=registry,
        )

    def delivered(self, outcome: str) -> None:
        self.deliveries.labels(outcome).inc()

    def measured(self, pending: int, oldest_age: float) -> None:
        self.pending.set(pending)
        self.oldest.set(oldest_age)
