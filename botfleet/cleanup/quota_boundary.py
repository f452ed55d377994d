"""The budget's boundary on PostgreSQL: the ``m``-th oldest candidate of one priority, found
without sorting them all (the global ``ORDER BY … OFFSET`` it replaces ranked every row).

Each bot's candidates lie between two times the counts pass read (:mod:`~botfleet.cleanup.
quota_counts`); assuming each bot posts evenly over its span gives an estimate of how many
candidates are older than any time (:class:`~botfleet.cleanup.quota_estimate.Estimate`).
Around the time the estimate puts the ``m``-th, a narrow band is counted exactly, per bot,
with the shorter side of it: results created before, or from, a time (a plain range of the
index; which of them are candidates follows from the bot's ranks, counted in the first pass).
The counts say which part holds the ``m``-th; a slice's band, when small, comes back whole,
so the answer is often found right there. Else the search goes on in that part, with a wider
band placed by the estimate calibrated on the counts (or the part halved, where the estimate
cannot narrow it: the search always ends). Once the part holds few enough, each slice's first
candidates there are merged. The answer is exact whatever the estimate's error; only the work
grows with it. Counting one side is the floor of the cost: which rank a time has is not in an
index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam

from botfleet.cleanup.predicates import Fragment
from botfleet.cleanup.quota_estimate import Estimate, Ranks, Span, at_micros
from botfleet.cleanup.result_slices import Slicing, sliced_rows
from botfleet.cleanup.sql import Runner
from botfleet.store.models import UTCDateTime

# Candidates a band should hold at first (at least; a share of the priority's otherwise), and
# how many a band may hold to be sorted outright.
FIRST_BAND = 2_000
FIRST_BAND_SHARE = 0.002
SORTED_OUTRIGHT = 20_000
# Results in a band that a slice sends back (their keys) with its counts.
BAND_SENT = 5_000
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
        n1, n2, keys = await _count(runner, of_priority, binds, (p1, p2), below, bots, slicing)
        if n1 < m <= n2 and keys is not None:  # the band holds it, and came back whole
            if len(keys) != n2 - n1:
                raise StoreChanged("the store changed while the budget's boundary was searched")
            return sorted(keys)[m - n1 - 1]
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
        bindparam(f"{name}_lo", at_micros(span[0]), UTCDateTime()),
        bindparam(f"{name}_hi", at_micros(span[1]), UTCDateTime()),
    ]


async def _count(
    runner: Runner,
    of_priority: str,
    binds: list[Any],
    band: tuple[int, int],
    below: bool,
    bots: Mapping[Any, Ranks],
    slicing: Slicing | None,
) -> tuple[int, int, list[tuple[datetime, int]] | None]:
    """Candidates created before each end of ``band``, and the band's candidates' keys (None
    if a slice held too many results in the band to send them back). Each bot's results
    created before (``below``) or from ``band`` on are counted, a plain range of
    ``ix_results_bot_recent``; which of them are candidates follows from the bot's ranks,
    counted in the first pass."""
    if below:
        counts = "count(*) FILTER (WHERE r.created_at < :p1) AS a, count(*) AS b"
        within, in_band = "r.created_at < :p2", "r.created_at >= :p1"
    else:
        counts = "count(*) AS a, count(*) FILTER (WHERE r.created_at >= :p2) AS b"
        within, in_band = "r.created_at >= :p1", "r.created_at < :p2"
    # A slice's band comes back if it is small (what the estimate aims at): no pass to select.
    sent = "CASE WHEN sum(abs(k.b - k.a)) OVER () <= :band_cap THEN k.{0} END AS {0}"
    sql = (
        f"SELECT q.id, k.a, k.b, {sent.format('bt')}, {sent.format('bi')} {of_priority}"
        f" CROSS JOIN LATERAL (SELECT {counts},"
        f" array_agg(r.created_at) FILTER (WHERE {in_band}) AS bt,"
        f" array_agg(r.id) FILTER (WHERE {in_band}) AS bi"
        f" FROM results r WHERE r.bot_id = q.id AND r.id <= :max_id AND {within}) k"
    )
    sums = [0, 0]
    seen = 0
    keys: list[tuple[datetime, int]] | None = []

    def consume(rows: Sequence[Any]) -> None:
        nonlocal seen, keys
        for row in rows:
            ranks = bots.get(row.id)
            if ranks is None:
                continue  # no candidates at the first pass
            seen += 1
            a, b = int(row.a), int(row.b)
            older = (a, b) if below else (ranks.results - a, ranks.results - b)
            sums[0] += ranks.older(older[0])
            sums[1] += ranks.older(older[1])
            if keys is None or older[1] == older[0]:
                continue
            if row.bt is None:
                keys = None
                continue
            # The band's results, oldest first, follow the bot's oldest ``older[0]``.
            mine = sorted(zip(row.bt, row.bi, strict=True))
            first = max(0, ranks.skip - older[0])
            last = max(first, ranks.skip + ranks.count - older[0])
            keys.extend((at, int(i)) for at, i in mine[first:last])

    more = [
        bindparam("p1", at_micros(band[0]), UTCDateTime()),
        bindparam("p2", at_micros(band[1]), UTCDateTime()),
        bindparam("band_cap", BAND_SENT, Integer()),
    ]
    await sliced_rows(runner, sql, [*binds, *more], consume, slicing, PER_SLICE)
    if seen != len(bots):  # a bot deleted or held between two passes
        raise StoreChanged("the store changed while the budget's boundary was searched")
    return sums[0], sums[1], keys


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
