"""What ``results_over_quota`` selects on PostgreSQL, counted per bot without ranking a row.

A bot's results beyond its quota number ``count - quota``; its budget candidates, the ranks
past its floor up to its quota. So counts per bot (an index-only count of ``ix_results_bot_id``,
less the results posted since the plan's id bound) and a few index probes per bot give every
figure; the budget's boundary is then found among the candidates of one priority
(:mod:`~botfleet.cleanup.quota_boundary`). Every pass runs a slice of bot ids per transaction
(:mod:`~botfleet.cleanup.result_slices`): no transaction of the plan lasts long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, bindparam

from botfleet.cleanup.plan import Selection
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.quota_boundary import PER_SLICE, find_boundary
from botfleet.cleanup.quota_cuts import cuts, sample_ids
from botfleet.cleanup.quota_estimate import Members, Span, at_micros
from botfleet.cleanup.quota_terms import (
    BudgetBoundary,
    QuotaSelection,
    bot_terms,
    budget_figures,
    rows_over,
)
from botfleet.cleanup.result_slices import Slicing, sliced_count, sliced_rows
from botfleet.cleanup.sql import Runner
from botfleet.cleanup.storage import table_bytes
from botfleet.constants import KIND_RESULTS_OVER_QUOTA

POSTGRES = Dialect(postgres=True)
# Each bot's results up to the plan's bound: all of them (the index-only count), less those
# posted since (few: the newest ids).
_LESS_NEWER = """
    LEFT JOIN (SELECT x.bot_id, count(*) AS n FROM results x WHERE x.id > :max_id AND {x}
               GROUP BY x.bot_id) nw ON nw.bot_id = q.id
    CROSS JOIN LATERAL (SELECT {n} - coalesce(nw.n, 0) AS n) c"""
_COUNTED = """
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM results r WHERE r.bot_id = q.id) k""" + (
    _LESS_NEWER.replace("{n}", "k.n")
)
_NEWEST_FIRST = "ORDER BY r.created_at DESC, r.id DESC"


def _micros(at: str) -> str:
    """A time as whole µs since the epoch (exact: ``extract`` is numeric): an int for the
    client, not a datetime to convert per bot."""
    return f"(extract(epoch FROM {at}) * 1000000)::bigint"


@dataclass
class Priority:
    """One priority's bots: results over their quotas, budget candidates, each bot's
    candidates as a span of time (for the boundary's search), and which bots have any."""

    over_quota: int = 0
    candidates: int = 0
    spans: list[Span] = field(default_factory=list)
    newest: tuple[int, int] | None = None  # the newest candidate's (created_at in µs, id)
    bots: int = 0
    fingerprint: int = 0

    def add(
        self, over: int, candidates: int, oldest: int, newest: int, newest_id: int, fingerprint: int
    ) -> None:
        """One bot of the first pass: its figures as the pass's statement computed them."""
        self.over_quota += over
        if candidates == 0:
            return
        self.candidates += candidates
        self.spans.append(Span(oldest, newest, candidates))
        self.bots += 1
        self.fingerprint += fingerprint
        key = (newest, newest_id)
        if self.newest is None or key > self.newest:
            self.newest = key

    @property
    def members(self) -> Members:
        return Members(self.bots, self.fingerprint)


async def select_pg(
    runner: Runner,
    policy: Policy,
    now: datetime,
    max_id: int,
    *,
    credit: int,
    stored: tuple[BudgetBoundary | None] | None,
    slicing: Slicing | None,
) -> QuotaSelection:
    sel = Selection(KIND_RESULTS_OVER_QUOTA)
    budget = policy.results_budget
    max_bind = bindparam("max_id", max_id, BigInteger())
    sliced = bot_terms(POSTGRES, policy, now, where="{b}")
    if budget is None:
        over_quota = await sliced_count(
            runner,
            "SELECT coalesce(sum(greatest(0, c.n - q.quota)), 0)"
            f" FROM ({sliced.sql}) q {_COUNTED} WHERE q.quota IS NOT NULL",
            [*sliced.binds, max_bind],
            slicing,
            PER_SLICE,
        )
        out = QuotaSelection(sel, extra={"over_quota": over_quota})
    else:
        by_priority, rows = await _priorities(
            runner, sliced.sql, [*sliced.binds, max_bind], slicing
        )
        over_quota = sum(p.over_quota for p in by_priority.values())
        out = QuotaSelection(sel, extra={"over_quota": over_quota})
        size = await table_bytes(runner, POSTGRES, "results")
        over = rows_over(budget, rows, size, credit, over_quota)
        taken = 0
        if stored is not None:
            out.boundary = stored[0]
            if out.boundary is not None:
                taken = await _budget_victims(runner, policy, now, max_id, out.boundary, slicing)
        elif over:
            out.boundary, taken = await _fresh_boundary(
                runner, policy, now, max_id, over, by_priority, slicing
            )
        out.budget = budget_figures(budget, rows, size, credit, over_quota, taken)
        out.extra["over_budget"] = taken
    sel.found = over_quota + out.extra.get("over_budget", 0)
    if sel.found:
        terms = bot_terms(POSTGRES, policy, now)
        if runner.in_transaction():
            await runner.commit()
        sel.sample = await sample_ids(runner, terms, out.boundary, max_id)
    return out


async def _priorities(
    runner: Runner, terms: str, binds: list[Any], slicing: Slicing | None
) -> tuple[dict[int, Priority], int]:
    """Every bot's counts and the span of its candidates, summed by priority: newest
    candidate at rank floor + 1, oldest at rank ``quota`` (or its oldest result); and the
    table's rows. One pass over ``ix_results_bot_id`` counts every bot id of the slice (live,
    deleted, orphaned alike): its sum is the table's count, its live bots' counts theirs.
    A bot's row holds only ints (its figures computed by the statement, times in µs): one
    Python thread reads every bot's row while it also drives the slice workers."""
    over = "q.quota IS NOT NULL AND c.n > q.quota"
    counted = _LESS_NEWER.replace("{n}", "g.n")
    sql = f"""
WITH g AS MATERIALIZED (SELECT r.bot_id, count(*) AS n FROM results r WHERE {{r}}
    GROUP BY r.bot_id)
SELECT q.prio, CASE WHEN {over} THEN c.n - q.quota ELSE 0 END AS over_quota,
       greatest(0, least(c.n, coalesce(q.quota, c.n)) - greatest(q.floor, 1)) AS candidates,
       {_micros("coalesce(lq.created_at, lo.created_at)")} AS lo_us,
       {_micros("hi.created_at")} AS hi_us, hi.id AS hi_i, uuid_hash(q.id) AS fingerprint,
       NULL AS total_rows
FROM ({terms}) q JOIN g ON g.bot_id = q.id {counted}
LEFT JOIN LATERAL (SELECT r.created_at, r.id FROM results r
    WHERE r.bot_id = q.id AND r.id <= :max_id {_NEWEST_FIRST}
    OFFSET greatest(q.floor, 1) LIMIT 1) hi ON true
LEFT JOIN LATERAL (SELECT r.created_at FROM results r
    WHERE {over} AND r.bot_id = q.id AND r.id <= :max_id {_NEWEST_FIRST}
    OFFSET q.quota - 1 LIMIT 1) lq ON true
LEFT JOIN LATERAL (SELECT r.created_at FROM results r
    WHERE NOT ({over}) AND hi.id IS NOT NULL AND r.bot_id = q.id AND r.id <= :max_id
    ORDER BY r.created_at, r.id LIMIT 1) lo ON true
WHERE hi.id IS NOT NULL
UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, (SELECT sum(n) FROM g)
"""
    out: dict[int, Priority] = {}
    rows = 0

    def consume(found: Sequence[Any]) -> None:
        nonlocal rows
        for prio, over_quota, candidates, lo_us, hi_us, hi_i, fingerprint, total in found:
            if prio is None:
                rows += int(total or 0)
                continue
            tally = out.get(prio)
            if tally is None:
                tally = out[prio] = Priority()
            tally.add(over_quota, candidates, lo_us, hi_us, hi_i, fingerprint)

    await sliced_rows(runner, sql, binds, consume, slicing, PER_SLICE)
    return out, rows


async def _fresh_boundary(
    runner: Runner,
    policy: Policy,
    now: datetime,
    max_id: int,
    over: int,
    by_priority: dict[int, Priority],
    slicing: Slicing | None,
) -> tuple[BudgetBoundary | None, int]:
    """The ``over``-th candidate in (priority, created_at, id) order — or, with fewer, the
    last one (the floors keep the rest) — and how many candidates that takes."""
    total = sum(p.candidates for p in by_priority.values())
    if total == 0:
        return None, 0
    if total <= over:
        top = max(p for p, tally in by_priority.items() if tally.candidates)
        newest = by_priority[top].newest
        assert newest is not None  # a priority with candidates has a newest one
        return BudgetBoundary(top, at_micros(newest[0]), newest[1]), total
    before = 0
    for prio in sorted(by_priority):
        tally = by_priority[prio]
        if before + tally.candidates >= over:
            key = await find_boundary(
                runner,
                bot_terms(POSTGRES, policy, now, where="{b}"),
                prio,
                over - before,
                tally.candidates,
                tally.spans,
                tally.members,
                max_id,
                slicing,
            )
            return BudgetBoundary(prio, key[0], key[1]), over
        before += tally.candidates
    raise AssertionError("the candidates were counted as enough")  # pragma: no cover


async def _budget_victims(
    runner: Runner,
    policy: Policy,
    now: datetime,
    max_id: int,
    boundary: BudgetBoundary,
    slicing: Slicing | None,
) -> int:
    """A stored plan's boundary on today's store: how many results it takes (those up to each
    bot's cut that its quota does not: past the quota's cut, as an index range)."""
    cut = cuts(bot_terms(POSTGRES, policy, now, where="{b}"), boundary)
    sql = (
        f"SELECT coalesce(sum(k.n), 0) FROM ({cut.sql}) c CROSS JOIN LATERAL"
        " (SELECT count(*) AS n FROM results r WHERE r.bot_id = c.bot_id AND r.id <= :max_id"
        " AND (r.created_at, r.id) <= (c.ct, c.ci) AND (r.created_at, r.id) >"
        " (coalesce(c.qt, '-infinity'), coalesce(c.qi, 0))) k WHERE c.ci IS NOT NULL"
    )
    return await sliced_count(
        runner, sql, [*cut.binds, bindparam("max_id", max_id, BigInteger())], slicing, PER_SLICE
    )
