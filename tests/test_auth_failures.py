"""The failed-authentication limiter: per address, sliding window, Retry-After."""

from __future__ import annotations

import pytest

from botfleet.auth_failures import AuthFailureLimiter
from botfleet.errors import TooManyAuthFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limits_one_address_and_not_the_others() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(limit=3, window=60, clock=clock)
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.failed("10.0.0.1", "/admin/cleanup")
    with pytest.raises(TooManyAuthFailures) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.retry_after == 60
    limiter.check("10.0.0.2")  # another address is not affected
    clock.now += 30
    with pytest.raises(TooManyAuthFailures) as later:
        limiter.check("10.0.0.1")
    assert later.value.retry_after == 30
    clock.now += 30.5
    limiter.check("10.0.0.1")  # the window has slid past the failures


def test_failures_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    limiter = AuthFailureLimiter(limit=5, window=60)
    limiter.failed("127.0.0.9", "/bots")
    record = caplog.records[-1]
    assert record.getMessage() == "authentication failed"
    assert record.__dict__["client_ip"] == "127.0.0.9"
