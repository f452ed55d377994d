"""What ``results_over_quota`` selects: results beyond their bot's ``max_results_per_bot``, and
— while the results table is over ``CLEANUP_RESULTS_BUDGET`` — the oldest results across bots,
lowest ``priority`` first, never one of a bot's newest ``min_results_per_bot`` (nor its newest
result at all). The terms are :mod:`~botfleet.cleanup.quota_terms`'.

The budget's part is fixed by a *boundary*: the last (priority, created_at, id) that must go,
found once at selection and kept in the plan. The set it defines does not move as its members
are deleted (deleting a bot's older results leaves the ranks of its newer ones as they were),
so batches can re-state it, and a stored plan deletes what its dry run counted.

PostgreSQL counts per bot and finds the boundary without ranking every row
(:mod:`~botfleet.cleanup.quota_counts`); SQLite, a small embedded store, ranks the results in
one window here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam

from botfleet.cleanup.plan import SAMPLE_SIZE, Selection
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect, Fragment
from botfleet.cleanup.quota_counts import select_pg
from botfleet.cleanup.quota_terms import (
    BudgetBoundary,
    QuotaSelection,
    bot_terms,
    budget_figures,
    rows_over,
)
from botfleet.cleanup.result_slices import Slicing
from botfleet.cleanup.sql import Runner, bound_text, scalar
from botfleet.cleanup.storage import table_bytes
from botfleet.constants import KIND_RESULTS_OVER_QUOTA
from botfleet.store.models import UTCDateTime

OVER_QUOTA = "(s.quota IS NOT NULL AND s.n > s.quota)"
# The budget never takes a bot's newest result (n = 1), whatever its floor: "idle" keeps meaning
# "posted nothing for N days" (cleanup/idle_bots.py reads the newest result there is).
CANDIDATE = f"(s.n > s.floor AND s.n > 1 AND NOT {OVER_QUOTA})"
BOUNDARY_KEY = "(s.prio, s.created_at, s.id)"


def ranked(dialect: Dialect, policy: Policy, now: datetime, after: str | None = None) -> Fragment:
    """``s`` (SQLite): results up to the plan's id bound, ranked newest first within their
    bot, with the bot's terms; from the bot ``after`` names on, if given. Results posted after
    the plan are not ranked: they only push older ones further over, so deleting by these ranks
    never takes one of a bot's newest N."""
    terms = bot_terms(dialect, policy, now)
    start = "" if after is None else f" AND r.bot_id >= {after}"
    return Fragment(
        "SELECT v.id, v.bot_id, v.created_at, v.n, q.quota, q.floor, q.prio FROM"
        " (SELECT r.id, r.bot_id, r.created_at, row_number() OVER"
        " (PARTITION BY r.bot_id ORDER BY r.created_at DESC, r.id DESC) AS n"
        f" FROM results r WHERE r.id <= :max_id{start}) v"
        f" JOIN ({terms.sql}) q ON q.id = v.bot_id",
        terms.binds,
    )


def victim_condition(boundary: BudgetBoundary | None) -> Fragment:
    """Over its quota, or a budget candidate up to the boundary (over :func:`ranked`)."""
    if boundary is None:
        return Fragment(OVER_QUOTA)
    return Fragment(
        f"({OVER_QUOTA} OR ({CANDIDATE} AND {BOUNDARY_KEY} <= (:bp, :bt, :bi)))",
        [
            bindparam("bp", boundary.priority, Integer()),
            bindparam("bt", boundary.created_at, UTCDateTime()),
            bindparam("bi", boundary.id, BigInteger()),
        ],
    )


async def select_over_quota(
    runner: Runner,
    dialect: Dialect,
    policy: Policy,
    now: datetime,
    max_id: int,
    *,
    credit: int = 0,
    stored: tuple[BudgetBoundary | None] | None = None,
    slicing: Slicing | None = None,
) -> QuotaSelection:
    """``credit``: rows the run's other stages delete (not counted against the budget twice;
    overlaps make it a little generous, never more deletions than needed). ``stored``: a
    stored plan's boundary, used as it is (a 1-tuple, its member None when the plan's budget
    took nothing). ``slicing``: how PostgreSQL's per-bot counts run (short transactions)."""
    if dialect.postgres:
        return await select_pg(
            runner, policy, now, max_id, credit=credit, stored=stored, slicing=slicing
        )
    sel = Selection(KIND_RESULTS_OVER_QUOTA)
    ranking = ranked(dialect, policy, now)
    source = ranking.sql
    max_bind: list[Any] = [bindparam("max_id", max_id, BigInteger()), *ranking.binds]
    over_quota = await scalar(
        runner, f"SELECT count(*) FROM ({source}) s WHERE {OVER_QUOTA}", max_bind
    )
    out = QuotaSelection(sel, extra={"over_quota": over_quota})
    if policy.results_budget is not None:
        budget = policy.results_budget
        rows = await scalar(runner, "SELECT count(*) FROM results")
        size = await table_bytes(runner, dialect, "results")
        over = rows_over(budget, rows, size, credit, over_quota)
        if stored is not None:
            out.boundary = stored[0]
        elif over:
            out.boundary = await _boundary(runner, source, max_bind, over)
        taken = 0
        if out.boundary is not None:
            cond = victim_condition(out.boundary)
            taken = await scalar(
                runner,
                f"SELECT count(*) FROM ({source}) s WHERE {CANDIDATE} AND {BOUNDARY_KEY}"
                " <= (:bp, :bt, :bi)",
                [*max_bind, *cond.binds],
            )
        out.budget = budget_figures(budget, rows, size, credit, over_quota, taken)
        out.extra["over_budget"] = taken
    cond = victim_condition(out.boundary)
    sel.found = over_quota + out.extra.get("over_budget", 0)
    if sel.found:
        stmt = bound_text(
            f"SELECT s.id FROM ({source}) s WHERE {cond.sql} ORDER BY s.bot_id, s.id LIMIT :n",
            [*max_bind, *cond.binds, bindparam("n", SAMPLE_SIZE)],
        )
        sel.sample = [str(i) for i in (await runner.execute(stmt)).scalars()]
    return out


async def _boundary(runner: Runner, source: str, max_bind: Any, over: int) -> BudgetBoundary | None:
    """The ``over``-th candidate in the budget's order, or the last one if there are fewer
    (the floors keep the rest)."""
    for order, offset in (("ASC", over - 1), ("DESC", 0)):
        keys = ", ".join(f"s.{c} {order}" for c in ("prio", "created_at", "id"))
        stmt = bound_text(
            f"SELECT s.prio, s.created_at, s.id FROM ({source}) s WHERE {CANDIDATE}"
            f" ORDER BY {keys} LIMIT 1 OFFSET :k",
            [*max_bind, bindparam("k", offset)],
        ).columns(created_at=UTCDateTime())
        row = (await runner.execute(stmt)).first()
        if row is not None:
            return BudgetBoundary(int(row.prio), row.created_at, int(row.id))
    return None
