"""The one way a test waits: poll a condition until it holds, or fail naming what never came.

Tests wait for things other processes, threads and engines do — never for a fixed time. Both
flavours poll ``condition()`` every ``interval`` seconds, return its first truthy value, and look
once more after the deadline (a slow machine gets the benefit of the doubt); on timeout they raise
:class:`WaitTimeout`, an ``AssertionError`` whose text says what was awaited, for how long, and
the last value (or ignored exception) seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

INTERVAL = 0.05


class WaitTimeout(AssertionError):
    """The condition did not hold in time."""


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float,
    message: str,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``condition()`` until it returns something truthy, and return that.

    Exceptions of the ``ignore`` types count as "not yet" (a server still starting refuses
    connections); any other exception propagates at once.
    """
    deadline = _Deadline(timeout, message)
    while True:
        error: BaseException | None = None
        try:
            value = condition()
        except ignore as exc:
            value, error = None, exc
        if value:
            return value
        deadline.check(value, error)
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], Any],
    *,
    timeout: float,
    message: str,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """:func:`wait_until` on the event loop: ``condition()`` may return a value or an awaitable
    (``lambda: store.runs()``), and the loop runs on between two looks."""
    deadline = _Deadline(timeout, message)
    while True:
        error: BaseException | None = None
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            value, error = None, exc
        if value:
            return value
        deadline.check(value, error)
        await asyncio.sleep(interval)


class _Deadline:
    """When to give up, and what to say then; shared by both flavours."""

    def __init__(self, timeout: float, message: str) -> None:
        self.timeout = timeout
        self.message = message
        self.at = time.monotonic() + timeout

    def check(self, last: Any, error: BaseException | None) -> None:
        if time.monotonic() <= self.at:
            return
        seen = repr(error) if error is not None else repr(last)
        raise WaitTimeout(
            f"timed out after {self.timeout}s waiting for {self.message}; last seen: {seen}"
        ) from error
