"""Request count and latency by route template (never by raw path: ids would explode)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from botfleet import constants
from botfleet.metrics.runs import metric_name

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class HttpMetrics:
    """Request count and latency by route template (never by raw path: ids would explode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            metric_name(constants.M_HTTP_REQUESTS, "_total"),
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            constants.M_HTTP_DURATION,
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=_HTTP_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)
