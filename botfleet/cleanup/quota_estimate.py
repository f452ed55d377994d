"""Where the budget's candidates of a priority are, as the first pass counted them (pure):
each bot's span of time (:class:`Span`), the estimate of how many are older than a time
(:class:`Estimate`), and which bots have any (:class:`Members`): the search of
:mod:`~botfleet.cleanup.quota_boundary` counts around the estimate, exactly."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple


class Span(NamedTuple):
    """One bot's candidates: how many (``size``), from the oldest's time to the newest's (µs
    since the epoch, as the first pass's statement sends them). A tuple: one per bot."""

    oldest: float
    newest: float
    size: int


@dataclass(frozen=True)
class Members:
    """Which bots of a priority have candidates, as a pass sees them: how many, and the sum of
    their ids' hashes (PostgreSQL's ``uuid_hash``), so that two passes can tell whether they
    saw the same bots without sending every id back."""

    count: int = 0
    fingerprint: int = 0


class Estimate:
    """How many candidates are older than a time, if each bot's are spread evenly over its
    span: a piecewise linear, non-decreasing function, and its inverse."""

    def __init__(self, spans: Sequence[Span]) -> None:
        events: dict[float, float] = {}
        for span in spans:
            width = max(span.newest - span.oldest, 1.0)  # a bot with one instant: a steep step
            rate = span.size / width
            events[span.oldest] = events.get(span.oldest, 0.0) + rate
            events[span.oldest + width] = events.get(span.oldest + width, 0.0) - rate
        self.times: list[float] = sorted(events)
        self.values: list[float] = []
        value = slope = 0.0
        last = self.times[0] if self.times else 0.0
        for t in self.times:
            value += slope * (t - last)
            self.values.append(value)
            slope += events[t]
            last = t
        self.total = float(sum(span.size for span in spans))

    def value(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return 0.0
        if i == len(self.times):
            return self.total
        t0, t1, v0, v1 = self.times[i - 1], self.times[i], self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def time_of(self, v: float) -> float:
        """The earliest time the estimate reaches ``v``."""
        if not self.times:
            return 0.0
        i = bisect.bisect_left(self.values, v)
        if i == 0:
            return self.times[0]
        if i == len(self.values):
            return self.times[-1]
        t0, t1, v0, v1 = self.times[i - 1], self.times[i], self.values[i - 1], self.values[i]
        return t0 if v1 == v0 else t0 + (t1 - t0) * (v - v0) / (v1 - v0)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def at_micros(us: int) -> datetime:
    """A time given as whole µs since the epoch (PostgreSQL's own resolution; the first pass
    sends times so)."""
    return EPOCH + us * MICROSECOND
