"""The budget's boundary on PostgreSQL: the ``m``-th oldest candidate of one priority, found
without sorting them all (the global ``ORDER BY … OFFSET`` it replaces ranked every row).

Each bot's candidates lie between two times the counts pass read (:mod:`~botfleet.cleanup.
quota_counts`); assuming each bot posts evenly over its span gives an estimate of how many
candidates are older than any time (:class:`Estimate`, pure). Around the time the estimate
puts the ``m``-th, a narrow band is counted exactly, per bot, with the shorter side of it: the
counts say which part holds the ``m``-th, and the search goes on in that part, with a wider
band placed by the estimate calibrated on the counts (or the part halved, where the estimate
cannot narrow it: the search always ends). Once the part holds few enough, each slice's first
candidates there are merged. The answer is exact whatever the estimate's error; only the work
grows with it. Counting one side is the floor of the cost: which rank a time has is not in an
index.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam

from botfleet.cleanup.predicates import Fragment
from botfleet.cleanup.result_slices import Slicing, sliced_rows
from botfleet.cleanup.sql import Runner
from botfleet.store.models import UTCDateTime

# Candidates a band should hold at first (at least; a share of the priority's otherwise), and
# how many a band may hold to be sorted outright.
FIRST_BAND = 2_000
FIRST_BAND_SHARE = 0.002
SORTED_OUTRIGHT = 20_000
# Results per slice of a per-bot pass (each reads a bot's index entries and probes it).
PER_SLICE = 100_000

# A bot of the priority (``q``) with its newest candidate (``hi``: rank floor + 1) and the
# newest result beyond its quota (``vq``; candidates are newer).
_WINDOWS = """
FROM (SELECT * FROM ({terms}) t WHERE t.prio = :bp) q
LEFT JOIN LATERAL (SELECT r.created_at, r.id FROM results r
    WHERE r.bot_id = q.id AND r.id <= :max_id ORDER BY r.created_at DESC, r.id DESC
    OFFSET greatest(q.floor, 1) LIMIT 1) hi ON true
LEFT JOIN LATERAL (SELECT r.created_at, r.id FROM results r
    WHERE q.quota IS NOT NULL AND r.bot_id = q.id AND r.id <= :max_id
    ORDER BY r.created_at DESC, r.id DESC OFFSET q.quota LIMIT 1) vq ON true"""
_OF_PRIORITY = "FROM (SELECT * FROM ({terms}) t WHERE t.prio = :bp) q"
_CANDIDATE = (
    "r.bot_id = q.id AND r.id <= :max_id AND (r.created_at, r.id) <= (hi.created_at, hi.id)"
    " AND (r.created_at, r.id) > (coalesce(vq.created_at, '-infinity'), coalesce(vq.id, 0))"
)


@dataclass(frozen=True)
class Span:
    """One bot's candidates: how many, from the oldest's time to the newest's (µs since the
    epoch, :func:`micros`)."""

    oldest: float
    newest: float
    count: int


@dataclass(frozen=True)
class Ranks:
    """One bot's results up to the plan's bound, oldest first: ``results`` of them, the first
    ``skip`` over its quota, the next ``count`` candidates (its newest ones are its floor)."""

    skip: int
    count: int
    results: int

    def older(self, results: int) -> int:
        """How many of its candidates are among its oldest ``results``."""
        return max(0, min(results - self.skip, self.count))


class Estimate:
    """How many candidates are older than a time, if each bot's are spread evenly over its
    span: a piecewise linear, non-decreasing function, and its inverse."""

    def __init__(self, spans: Sequence[Span]) -> None:
        events: dict[float, float] = {}
        for span in spans:
            width = max(span.newest - span.oldest, 1.0)  # a bot with one instant: a steep step
            rate = span.count / width
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
        self.total = float(sum(span.count for span in spans))

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


def micros(at: datetime) -> int:
    """A time as whole microseconds since the epoch (PostgreSQL's own resolution)."""
    return (at - EPOCH) // MICROSECOND


def _at(us: int) -> datetime:
    return EPOCH + us * MICROSECOND


def split_points(
    estimate: Estimate, low: int, high: int, low_n: int, high_n: int, m: int, width: float
) -> tuple[int, int]:
    """Two times ``low <= p1 <= p2 <= high`` cutting ``[low, high)`` so that the ``m``-th
    candidate is likely in ``[p1, p2)``, which the estimate says holds about ``width`` of them:
    the estimate, calibrated on the exact counts at the ends. If that band would not narrow the
    interval, its middle (a bisection: it always ends)."""
    e_low, e_high = estimate.value(low), estimate.value(high)
    scale = (e_high - e_low) / max(1, high_n - low_n)  # estimated per counted candidate
    target = e_low + (m - low_n - 0.5) * scale
    p1 = round(estimate.time_of(max(e_low, target - width * scale / 2)))
    p2 = round(estimate.time_of(min(e_high, target + width * scale / 2))) + 1
    p1, p2 = max(low, min(p1, high)), max(low, min(p2, high))
    whole = (p1, p2) == (low, high) or (p1 == p2 and p1 in (low, high))
    if whole or scale <= 0:
        middle = (low + high) // 2
        return middle, middle
    return p1, p2


async def find_boundary(
    runner: Runner,
    terms: Fragment,
    priority: int,
    m: int,
    total: int,
    spans: Sequence[Span],
    bots: Mapping[Any, Ranks],
    max_id: int,
    slicing: Slicing | None,
) -> tuple[datetime, int]:
    """The ``m``-th (1-based) oldest candidate, by (created_at, id), of the bots of
    ``priority`` among ``terms`` (``{b}`` marks where a slice of bot ids goes), which have
    ``total`` candidates in all, each within its bot's span; ``bots``: where each bot's
    candidates are among its results."""
    estimate = Estimate(spans)
    binds: list[Any] = [
        *terms.binds,
        bindparam("bp", priority, Integer()),
        bindparam("max_id", max_id, BigInteger()),
    ]
    windows = _WINDOWS.replace("{terms}", terms.sql)
    of_priority = _OF_PRIORITY.replace("{terms}", terms.sql)
    # Exact: ``low_n`` candidates were created before ``low``, ``high_n`` before ``high``.
    low = min(round(span.oldest) for span in spans)
    high = max(round(span.newest) for span in spans) + 1
    low_n, high_n = 0, total
    width = max(FIRST_BAND, total * FIRST_BAND_SHARE)
    while high_n - low_n > SORTED_OUTRIGHT and high - low > 1:
        p1, p2 = split_points(estimate, low, high, low_n, high_n, m, width)
        # The shorter outer part, by the estimate, is counted; the other follows.
        below = estimate.value(p1) - estimate.value(low) <= estimate.value(high) - estimate.value(
            p2
        )
        n1, n2 = await _count(runner, of_priority, binds, (p1, p2), below, bots, slicing)
        if m <= n1:
            high, high_n = p1, n1
        elif m <= n2:
            low, high, low_n, high_n = p1, p2, n1, n2
        else:
            low, low_n = p2, n2
        width *= 4
    return await _select(runner, windows, binds, (low, high), m - low_n, slicing)


def _between(span: tuple[int, int], name: str) -> tuple[str, list[Any]]:
    sql = f" AND r.created_at >= :{name}_lo AND r.created_at < :{name}_hi"
    return sql, [
        bindparam(f"{name}_lo", _at(span[0]), UTCDateTime()),
        bindparam(f"{name}_hi", _at(span[1]), UTCDateTime()),
    ]


async def _count(
    runner: Runner,
    of_priority: str,
    binds: list[Any],
    band: tuple[int, int],
    below: bool,
    bots: Mapping[Any, Ranks],
    slicing: Slicing | None,
) -> tuple[int, int]:
    """Candidates created before each end of ``band``. Each bot's results created before
    (``below``) or from ``band`` on are counted, a plain range of ``ix_results_bot_recent``;
    which of them are candidates follows from the bot's ranks, counted in the first pass."""
    p1, p2 = _at(band[0]), _at(band[1])
    if below:
        counts = "count(*) FILTER (WHERE r.created_at < :p1) AS a, count(*) AS b"
        within = "r.created_at < :p2"
    else:
        counts = "count(*) AS a, count(*) FILTER (WHERE r.created_at >= :p2) AS b"
        within = "r.created_at >= :p1"
    sql = (
        f"SELECT q.id, k.a, k.b {of_priority} CROSS JOIN LATERAL (SELECT {counts} FROM results r"
        f" WHERE r.bot_id = q.id AND r.id <= :max_id AND {within}) k"
    )
    sums = [0, 0]
    seen = 0

    def consume(rows: Sequence[Any]) -> None:
        nonlocal seen
        for row in rows:
            ranks = bots.get(row.id)
            if ranks is None:
                continue  # no candidates at the first pass
            seen += 1
            a, b = int(row.a), int(row.b)
            older = (a, b) if below else (ranks.results - a, ranks.results - b)
            sums[0] += ranks.older(older[0])
            sums[1] += ranks.older(older[1])

    more = [bindparam("p1", p1, UTCDateTime()), bindparam("p2", p2, UTCDateTime())]
    await sliced_rows(runner, sql, [*binds, *more], consume, slicing, PER_SLICE)
    if seen != len(bots):  # a bot deleted or held between two passes
        raise StoreChanged("the store changed while the budget's boundary was searched")
    return sums[0], sums[1]


async def _select(
    runner: Runner,
    windows: str,
    binds: list[Any],
    band: tuple[int, int],
    nth: int,
    slicing: Slicing | None,
) -> tuple[datetime, int]:
    """The ``nth`` (1-based) candidate created within ``band``, by (created_at, id): each
    slice's first ``nth`` there, merged."""
    between, more = _between(band, "band")
    sql = (
        f"SELECT x.created_at, x.id {windows} CROSS JOIN LATERAL (SELECT r.created_at, r.id"
        f" FROM results r WHERE {_CANDIDATE}{between}) x WHERE hi.id IS NOT NULL"
        " ORDER BY x.created_at, x.id LIMIT :nth"
    )
    keys: list[tuple[datetime, int]] = []

    def consume(rows: Sequence[Any]) -> None:
        keys.extend((row.created_at, int(row.id)) for row in rows)

    await sliced_rows(
        runner, sql, [*binds, *more, bindparam("nth", nth)], consume, slicing, PER_SLICE
    )
    keys.sort()
    if len(keys) < nth:  # a bot deleted, restored or held between two passes
        raise StoreChanged("the store changed while the budget's boundary was searched")
    return keys[nth - 1]


class StoreChanged(RuntimeError):
    """The passes of one search disagree: the next run searches again."""
