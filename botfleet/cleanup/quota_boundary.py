"""The budget's boundary on PostgreSQL: the ``m``-th oldest candidate of one priority, found
without sorting them all (the global ``ORDER BY … OFFSET`` it replaces ranked every row).

Each bot's candidates lie between two times the counts pass read (:mod:`~botfleet.cleanup.
quota_counts`); assuming each bot posts evenly over its span gives an estimate of how many
candidates are older than any time (:class:`~botfleet.cleanup.quota_estimate.Estimate`). Around
the time the estimate puts the ``m``-th, a narrow band is counted exactly, per bot, with the
shorter side of it: candidates created before, or from, a time (a plain range of the index
between the bot's newest candidate and its newest result over quota, two probes). Each slice
sends back its sums, not a row per bot: the client's work per bot, not the database's, was what
made the pass slow (BENCHMARKS.md). The counts say which part holds the ``m``-th; a slice's
band, when small, comes back whole, so the answer is often found right there. Else the search
goes on in that part, with a wider band placed by the estimate calibrated on the counts (or the
part halved, where the estimate cannot narrow it: the search always ends). Once the part holds
few enough, each slice's first candidates there are merged. The answer is exact whatever the
estimate's error; only the work grows with it. Counting one side is the floor of the cost:
which rank a time has is not in an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam

from botfleet.cleanup.predicates import Fragment
from botfleet.cleanup.quota_estimate import Estimate, Members, Span, at_micros
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
# (The bound over quota is a filter: as a row of coalesced values it was an index condition
# that the scan started from, the bot's oldest result, not the band's side.)
_CANDIDATE = (
    "r.bot_id = q.id AND r.id <= :max_id AND (r.created_at, r.id) <= (hi.created_at, hi.id)"
    " AND (vq.id IS NULL OR (r.created_at, r.id) > (vq.created_at, vq.id))"
)
# The bot has a candidate: a newest one, newer than its newest result over quota.
_HAS_CANDIDATES = (
    "hi.id IS NOT NULL AND (vq.id IS NULL OR (vq.created_at, vq.id) < (hi.created_at, hi.id))"
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
    members: Members,
    max_id: int,
    slicing: Slicing | None,
) -> tuple[datetime, int]:
    """The ``m``-th (1-based) oldest candidate, by (created_at, id), of the bots of
    ``priority`` among ``terms`` (``{b}`` marks where a slice of bot ids goes), which have
    ``total`` candidates in all, each within its bot's span; ``members``: which bots the
    first pass found with candidates."""
    estimate = Estimate(spans)
    binds: list[Any] = [
        *terms.binds,
        bindparam("bp", priority, Integer()),
        bindparam("max_id", max_id, BigInteger()),
    ]
    windows = _WINDOWS.replace("{terms}", terms.sql)
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
        n1, n2, keys = await _count(
            runner, windows, binds, (p1, p2), below, (total, members), slicing
        )
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
    windows: str,
    binds: list[Any],
    band: tuple[int, int],
    below: bool,
    first_pass: tuple[int, Members],
    slicing: Slicing | None,
) -> tuple[int, int, list[tuple[datetime, int]] | None]:
    """Candidates created before each end of ``band``, and the band's candidates' keys (None
    if a slice's band held too many to send them back). Each bot's candidates created before
    (``below``) or from ``band`` on are counted, a plain range of ``ix_results_bot_recent``;
    counted from the band on, those before it are the rest of the priority's candidates
    (``first_pass``: how many, and in which bots)."""
    total, members = first_pass
    if below:
        counts = "count(*) FILTER (WHERE r.created_at < :p1) AS a, count(*) AS b"
        within, in_band = "r.created_at < :p2", "r.created_at >= :p1"
    else:
        counts = "count(*) AS a, count(*) FILTER (WHERE r.created_at >= :p2) AS b"
        within, in_band = "r.created_at >= :p1", "r.created_at < :p2"
    # One row of sums per slice, then its band's keys if the band is small (what the estimate
    # aims at: no pass to select).
    sql = f"""
WITH k AS MATERIALIZED (SELECT q.id, c.a, c.b, c.bt, c.bi {windows}
    CROSS JOIN LATERAL (SELECT {counts},
        array_agg(r.created_at) FILTER (WHERE {in_band}) AS bt,
        array_agg(r.id) FILTER (WHERE {in_band}) AS bi
        FROM results r WHERE {_CANDIDATE} AND {within}) c
    WHERE {_HAS_CANDIDATES}),
s AS (SELECT coalesce(sum(a), 0) AS a, coalesce(sum(b), 0) AS b, count(*) AS bots,
    coalesce(sum(uuid_hash(id)), 0) AS fingerprint FROM k)
SELECT s.a, s.b, s.bots, s.fingerprint, NULL::timestamptz AS band_t, NULL::bigint AS band_i
FROM s
UNION ALL
SELECT NULL, NULL, NULL, NULL, u.band_t, u.band_i
FROM s, k CROSS JOIN LATERAL unnest(k.bt, k.bi) u(band_t, band_i)
WHERE abs(s.b - s.a) <= :band_cap"""
    sums = [0, 0]
    seen = Members()
    keys: list[tuple[datetime, int]] | None = []

    def consume(rows: Sequence[Any]) -> None:
        nonlocal seen, keys
        head = next(row for row in rows if row.bots is not None)
        band = [(row.band_t, int(row.band_i)) for row in rows if row.bots is None]
        a, b = int(head.a), int(head.b)
        sums[0] += a
        sums[1] += b
        seen = Members(seen.count + int(head.bots), seen.fingerprint + int(head.fingerprint))
        if keys is not None and a != b:
            keys = keys + band if band else None  # none sent back: too many

    more = [
        bindparam("p1", at_micros(band[0]), UTCDateTime()),
        bindparam("p2", at_micros(band[1]), UTCDateTime()),
        bindparam("band_cap", BAND_SENT, Integer()),
    ]
    await sliced_rows(runner, sql, [*binds, *more], consume, slicing, PER_SLICE)
    if seen != members:  # a bot deleted, restored or held between two passes
        raise StoreChanged("the store changed while the budget's boundary was searched")
    if not below:
        sums = [total - sums[0], total - sums[1]]
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
