"""Failed-authentication rate limit per client address (the API answers 429 with Retry-After).

A client that keeps presenting wrong tokens is slowed down; the right token from another address is
not affected. Each failure is logged (path, address, count) — never the token.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable

from botfleet.errors import TooManyAuthFailures

log = logging.getLogger("botfleet.auth")


class AuthFailureLimiter:
    """At most ``limit`` failures per ``window`` seconds per address (a sliding window)."""

    def __init__(
        self, *, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, ip: str) -> deque[float]:
        now = self._clock()
        stamps = self._failures.get(ip)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[ip]
        return stamps

    def check(self, ip: str) -> None:
        """Refuse an address that failed too often lately, before looking at its token."""
        stamps = self._recent(ip)
        if len(stamps) >= self.limit:
            retry = max(1, math.ceil(stamps[0] + self.window - self._clock()))
            raise TooManyAuthFailures(retry)

    def failed(self, ip: str, path: str) -> None:
        stamps = self._failures.setdefault(ip, deque())
        stamps.append(self._clock())
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            self._failures.pop(next(iter(self._failures)))
        log.warning(
            "authentication failed",
            extra={"client_ip": ip, "path": path, "failures_in_window": len(stamps)},
        )
