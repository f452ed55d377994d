"""What ``results_over_quota`` selects: results beyond their bot's ``max_results_per_bot``, and
— while the results table is over ``CLEANUP_RESULTS_BUDGET`` — the oldest results across bots,
lowest ``priority`` first, never one of a bot's newest ``min_results_per_bot`` (nor its newest
result at all).

Both are one predicate over the live, unheld bots' results ranked newest first per bot
(``row_number()`` over ``ix_results_bot_recent``). The budget's part is fixed by a
*boundary*: the last (priority, created_at, id) that must go, found once at selection and kept
in the plan. The set it defines does not move as its members are deleted (deleting a bot's
older results leaves the ranks of its newer ones as they were), so batches can re-state it,
and a stored plan deletes what its dry run counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam

from botfleet.cleanup.idle_bots import idle_condition
from botfleet.cleanup.plan import SAMPLE_SIZE, Selection
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect, Fragment
from botfleet.cleanup.sql import Runner, bound_text, scalar
from botfleet.cleanup.storage import table_bytes
from botfleet.constants import KIND_RESULTS_OVER_QUOTA
from botfleet.store.models import UTCDateTime

OVER_QUOTA = "(s.quota IS NOT NULL AND s.n > s.quota)"
# The budget never takes a bot's newest result (n = 1), whatever its floor: "idle" keeps meaning
# "posted nothing for N days" (cleanup/idle_bots.py reads the newest result there is).
CANDIDATE = f"(s.n > s.floor AND s.n > 1 AND NOT {OVER_QUOTA})"
BOUNDARY_KEY = "(s.prio, s.created_at, s.id)"


@dataclass(frozen=True)
class BudgetBoundary:
    """The budget's last victim in its order: everything up to it goes (floors apart)."""

    priority: int
    created_at: datetime
    id: int

    def to_json(self) -> dict[str, Any]:
        return {"priority": self.priority, "created_at": self.created_at.isoformat(), "id": self.id}

    @classmethod
    def from_json(cls, data: Any) -> BudgetBoundary | None:
        if not data:
            return None
        return cls(
            int(data["priority"]), datetime.fromisoformat(data["created_at"]), int(data["id"])
        )


def bot_terms(dialect: Dialect, policy: Policy, now: datetime) -> Fragment:
    """Each live, unheld bot with its quota (NULL: none), floor and priority, by its first
    matching rule. The figures are validated whole numbers, written into the SQL. A bot the
    plan soft-deletes as idle or failing is left out: its results go with it, later, by the
    ordinary retention (and the idle stage, which runs first, makes it not live)."""
    quota, floor, prio = ["CASE"], ["CASE"], ["CASE"]
    for rule in policy.rules:
        cond = dialect.label_match("b", dict(rule.match), f"qm{rule.number}")
        when = _inline(cond)
        most = "NULL" if rule.max_results_per_bot is None else str(rule.max_results_per_bot)
        quota.append(f"WHEN {when} THEN {most}")
        floor.append(f"WHEN {when} THEN {rule.floor}")
        prio.append(f"WHEN {when} THEN {rule.priority}")
    quota.append("ELSE NULL END")
    floor.append("ELSE 0 END")
    prio.append("ELSE 0 END")
    if not policy.rules:
        quota, floor, prio = ["NULL"], ["0"], ["0"]
    idle = idle_condition(dialect, policy, now)
    return Fragment(
        f"SELECT b.id, CAST({' '.join(quota)} AS INTEGER) AS quota, {' '.join(floor)} AS floor,"
        f" {' '.join(prio)} AS prio FROM bots b"
        f" WHERE b.deleted_at IS NULL AND NOT ({dialect.held('b')}) AND NOT ({idle.sql})",
        idle.binds,
    )


def _inline(cond: Fragment) -> str:
    """A label match with its values as SQL literals (quoted), so the bot terms carry no
    parameters and can be used wherever the ranking is."""
    sql = cond.sql
    for bind in sorted(cond.binds, key=lambda b: len(b.key), reverse=True):
        literal = "'" + str(bind.value).replace("'", "''") + "'"
        sql = sql.replace(f":{bind.key}", literal)
    return sql


def ranked(dialect: Dialect, policy: Policy, now: datetime, after: str | None = None) -> Fragment:
    """``s``: results up to the plan's id bound, ranked newest first within their bot, with
    the bot's terms; from the bot ``after`` names on, if given. Results posted after the plan
    are not ranked: they only push older ones further over, so deleting by these ranks never
    takes one of a bot's newest N.

    PostgreSQL ranks bot by bot (a LATERAL walk of ``ix_results_bot_recent`` backwards for each
    bot, in id order), so a batch reads only the bots it reaches, not the rest of the table
    (bench/quota.py); SQLite ranks the results of the range in one window."""
    terms = bot_terms(dialect, policy, now)
    if dialect.postgres:
        start = "" if after is None else f" AND q.id >= {after}"
        return Fragment(
            "SELECT v.id, q.id AS bot_id, v.created_at, v.n, q.quota, q.floor, q.prio FROM"
            f" ({terms.sql}) q CROSS JOIN LATERAL (SELECT r.id, r.created_at,"
            " row_number() OVER (ORDER BY r.created_at DESC, r.id DESC) AS n"
            " FROM results r WHERE r.bot_id = q.id AND r.id <= :max_id) v"
            f" WHERE true{start}",
            terms.binds,
        )
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
    """Over its quota, or a budget candidate up to the boundary."""
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


@dataclass
class QuotaSelection:
    selection: Selection
    boundary: BudgetBoundary | None = None
    budget: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def select_over_quota(
    runner: Runner,
    dialect: Dialect,
    policy: Policy,
    now: datetime,
    max_id: int,
    *,
    credit: int = 0,
    stored: tuple[BudgetBoundary | None] | None = None,
) -> QuotaSelection:
    """``credit``: rows the run's other stages delete (not counted against the budget twice;
    overlaps make it a little generous, never more deletions than needed). ``stored``: a
    stored plan's boundary, used as it is (a 1-tuple, its member None when the plan's budget
    took nothing)."""
    sel = Selection(KIND_RESULTS_OVER_QUOTA)
    ranking = ranked(dialect, policy, now)
    source = ranking.sql
    max_bind: list[Any] = [bindparam("max_id", max_id, BigInteger()), *ranking.binds]
    # Beyond a quota of N: count - N per bot, from the counts alone (an index-only scan of
    # ix_results_bot_id), without ranking every row (bench/quota.py).
    terms = bot_terms(dialect, policy, now)
    over_quota = await scalar(
        runner,
        "SELECT coalesce(sum(c.n - q.quota), 0) FROM (SELECT r.bot_id, count(*) AS n"
        " FROM results r WHERE r.id <= :max_id GROUP BY r.bot_id) c"
        f" JOIN ({terms.sql}) q ON q.id = c.bot_id WHERE q.quota IS NOT NULL AND c.n > q.quota",
        [*max_bind, *terms.binds],
    )
    out = QuotaSelection(sel, extra={"over_quota": over_quota})
    if policy.results_budget is not None:
        budget = policy.results_budget
        rows = await scalar(runner, "SELECT count(*) FROM results")
        size = await table_bytes(runner, dialect, "results")
        left = max(0, rows - credit - over_quota)
        over = budget.rows_over(left, size * left // rows if rows else 0)
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
        before = budget.measure(rows, size)
        per_row = size / rows if rows else 0.0
        after_rows = max(0, rows - credit - over_quota - taken)
        after = budget.measure(after_rows, round(after_rows * per_row))
        out.budget = {
            "limit": budget.amount,
            "unit": budget.unit,
            "before": before,
            "over_before": max(0, before - budget.amount),
            "planned_after": after,
            "over_planned_after": max(0, after - budget.amount),
            # The run's own deletions are its figures; floors may leave the store over.
            "rows_before": rows,
            "bytes_before": size,
            "taken": taken,
        }
        out.extra["over_budget"] = taken
    cond = victim_condition(out.boundary)
    sel.found = over_quota + out.extra.get("over_budget", 0)
    if sel.found:
        stmt = bound_text(
            # In bot order: PostgreSQL stops after the first bots instead of ranking them all.
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
