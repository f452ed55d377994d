"""A pure ASGI middleware that times every HTTP request by its route template.

The label is the matched route's path (``/admin/cleanup/runs/{run_id}``), never the raw URL, so
ids cannot multiply the series; a request that matched no route counts as ``unmatched``.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from botfleet.metrics.http import UNMATCHED_ROUTE, HttpMetrics


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.metrics.observe(
                scope.get("method", "GET"), route, status, time.perf_counter() - started
            )
