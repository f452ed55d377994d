"""The budget's boundary on PostgreSQL: the ``m``-th oldest candidate of one priority, found
without sorting them all (the global ``ORDER BY … OFFSET`` it replaces ranked every row).

Each bot's candidates lie between two keys the counts pass read (:mod:`~botfleet.cleanup.
quota_counts`); assuming each bot posts evenly over that span gives an estimate of how many
candidates are older than any time (:class:`Estimate`, pure). Around the time the estimate
puts the ``m``-th, a narrow band is counted exactly, per bot (and so is what lies on the
shorter side of it); if the ``m``-th is in the band, the band alone is sorted. If not, the
exact counts bound the search and the next band, wider, is placed by the estimate calibrated
on them. The answer is exact whatever the estimate's error; only the work grows with it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam

from botfleet.cleanup.predicates import Fragment
from botfleet.cleanup.result_slices import Slicing, sliced_sums
from botfleet.cleanup.sql import Runner, bound_text
from botfleet.store.models import UTCDateTime

# Candidates a band should hold at first (at least; a share of the priority's otherwise), and
# how many a band may hold to be sorted outright.
FIRST_BAND = 2_000
FIRST_BAND_SHARE = 0.002
SORTED_OUTRIGHT = 20_000
ATTEMPTS = 6

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
_CANDIDATE = (
    "r.bot_id = q.id AND r.id <= :max_id AND (r.created_at, r.id) <= (hi.created_at, hi.id)"
    " AND (r.created_at, r.id) > (coalesce(vq.created_at, '-infinity'), coalesce(vq.id, 0))"
)


@dataclass(frozen=True)
class Span:
    """One bot's candidates: how many, from the oldest's time to the newest's (epoch s)."""

    oldest: float
    newest: float
    count: int


class Estimate:
    """How many candidates are older than a time, if each bot's are spread evenly over its
    span: a piecewise linear, non-decreasing function, and its inverse."""

    def __init__(self, spans: Sequence[Span]) -> None:
        events: dict[float, float] = {}
        for span in spans:
            width = max(span.newest - span.oldest, 1e-6)  # a bot with one instant: a steep step
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


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def find_boundary(
    runner: Runner,
    terms: Fragment,
    priority: int,
    m: int,
    total: int,
    spans: Sequence[Span],
    max_id: int,
    slicing: Slicing | None,
) -> tuple[datetime, int]:
    """The ``m``-th (1-based) oldest candidate, by (created_at, id), of the bots of
    ``priority`` among ``terms`` (``{b}`` marks where a slice of bot ids goes), which have
    ``total`` candidates in all."""
    estimate = Estimate(spans)
    binds: list[Any] = [
        *terms.binds,
        bindparam("bp", priority, Integer()),
        bindparam("max_id", max_id, BigInteger()),
    ]
    windows = _WINDOWS.replace("{terms}", terms.sql)
    # Exact: ``low_n`` candidates are older than ``low`` (None: the beginning of time), and
    # ``high_n`` older than ``high`` (None: the end); the m-th lies between.
    low: float | None = None
    high: float | None = None
    low_n, high_n = 0, total
    width = max(FIRST_BAND, total * FIRST_BAND_SHARE)
    for attempt in range(ATTEMPTS):
        if high_n - low_n <= SORTED_OUTRIGHT or attempt == ATTEMPTS - 1:
            break
        e_low = 0.0 if low is None else estimate.value(low)
        e_high = estimate.total if high is None else estimate.value(high)
        scale = (e_high - e_low) / (high_n - low_n)  # estimated per counted candidate
        target = e_low + (m - low_n - 0.5) * scale
        band_low = estimate.time_of(max(e_low, target - width * scale / 2))
        band_high = estimate.time_of(min(e_high, target + width * scale / 2))
        if band_high - band_low < 2e-6:  # one instant: a band of a microsecond either side
            band_low, band_high = band_low - 1e-6, band_high + 1e-6
        if low is not None:
            band_low = max(band_low, low)
        if high is not None:
            band_high = min(band_high, high)
        # The shorter side of the band, by the estimate, is counted; the other follows.
        below = estimate.value(band_low) - e_low <= e_high - estimate.value(band_high)
        side = (low, band_low) if below else (band_high, high)
        side_n, band_n = await _count(runner, windows, binds, side, (band_low, band_high), slicing)
        n_low = low_n + side_n if below else high_n - side_n - band_n
        n_high = n_low + band_n
        if n_low < m <= n_high:
            low, high, low_n, high_n = band_low, band_high, n_low, n_high
            break
        if m <= n_low:
            high, high_n = band_low, n_low
        else:
            low, low_n = band_high, n_high
        width *= 4
    return await _select(runner, windows, binds, low, high, m - low_n)


def _between(low: float | None, high: float | None, name: str) -> tuple[str, list[Any]]:
    sql, binds = "", []
    if low is not None:
        sql += f" AND r.created_at >= :{name}_lo"
        binds.append(bindparam(f"{name}_lo", _at(low), UTCDateTime()))
    if high is not None:
        sql += f" AND r.created_at < :{name}_hi"
        binds.append(bindparam(f"{name}_hi", _at(high), UTCDateTime()))
    return sql, binds


async def _count(
    runner: Runner,
    windows: str,
    binds: list[Any],
    side: tuple[float | None, float | None],
    band: tuple[float | None, float | None],
    slicing: Slicing | None,
) -> tuple[int, int]:
    """Candidates created within ``side`` and within ``band``, counted per bot."""
    side_sql, side_binds = _between(*side, "side")
    band_sql, band_binds = _between(*band, "band")
    sql = (
        "SELECT coalesce(sum(s.n), 0), coalesce(sum(z.n), 0)"
        f" {windows}"
        f" CROSS JOIN LATERAL (SELECT count(*) AS n FROM results r WHERE {_CANDIDATE}{side_sql}) s"
        f" CROSS JOIN LATERAL (SELECT count(*) AS n FROM results r WHERE {_CANDIDATE}{band_sql}) z"
        " WHERE hi.id IS NOT NULL"
    )
    sums = await sliced_sums(runner, sql, [*binds, *side_binds, *band_binds], slicing)
    return sums[0], sums[1]


async def _select(
    runner: Runner,
    windows: str,
    binds: list[Any],
    low: float | None,
    high: float | None,
    nth: int,
) -> tuple[datetime, int]:
    """The ``nth`` (1-based) candidate created within [low, high), by (created_at, id): the
    band's candidates sorted, in one statement."""
    between, more = _between(low, high, "band")
    terms = windows.replace("{b}", "true")
    stmt = bound_text(
        f"SELECT x.created_at, x.id {terms} CROSS JOIN LATERAL (SELECT r.created_at, r.id"
        f" FROM results r WHERE {_CANDIDATE}{between}) x WHERE hi.id IS NOT NULL"
        " ORDER BY x.created_at, x.id OFFSET :nth LIMIT 1",
        [*binds, *more, bindparam("nth", nth - 1)],
    ).columns(created_at=UTCDateTime())
    if runner.in_transaction():
        await runner.commit()
    row = (await runner.execute(stmt)).one()
    return row.created_at, int(row.id)
