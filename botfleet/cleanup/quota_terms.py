"""What every part of ``results_over_quota`` shares: each live bot's terms (its rule's quota,
floor and priority), the budget's boundary as the plan keeps it, and the budget's figures.

A bot's results are ranked newest first (``created_at``, then ``id``), among those up to the
plan's id bound. Beyond its quota (``max_results_per_bot``) they go; while the store is over
``CLEANUP_RESULTS_BUDGET`` the *candidates* go too — the ranks past the floor
(``min_results_per_bot``, and never the newest result) not already over the quota — in
(priority, created_at, id) order up to the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botfleet.cleanup.idle_bots import idle_condition
from botfleet.cleanup.plan import Selection
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect, Fragment
from botfleet.cleanup.rules import ResultsBudget


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


@dataclass
class QuotaSelection:
    selection: Selection
    boundary: BudgetBoundary | None = None
    budget: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def bot_terms(dialect: Dialect, policy: Policy, now: datetime, where: str = "") -> Fragment:
    """Each live, unheld bot with its quota (NULL: none), floor and priority, by its first
    matching rule. The figures are validated whole numbers, written into the SQL. A bot the
    plan soft-deletes as idle or failing is left out: its results go with it, later, by the
    ordinary retention (and the idle stage, which runs first, makes it not live). ``where``:
    more conditions on the bot (``b``)."""
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
    more = f" AND {where}" if where else ""
    return Fragment(
        f"SELECT b.id, CAST({' '.join(quota)} AS INTEGER) AS quota, {' '.join(floor)} AS floor,"
        f" {' '.join(prio)} AS prio FROM bots b"
        f" WHERE b.deleted_at IS NULL AND NOT ({dialect.held('b')}) AND NOT ({idle.sql}){more}",
        idle.binds,
    )


def priorities(policy: Policy) -> list[int]:
    """Every priority a bot can have: its rules', and 0 for a bot no rule matches."""
    return sorted({0, *(rule.priority for rule in policy.rules)})


def _inline(cond: Fragment) -> str:
    """A label match with its values as SQL literals (quoted), so the bot terms carry no
    parameters and can be used wherever the ranking is."""
    sql = cond.sql
    for bind in sorted(cond.binds, key=lambda b: len(b.key), reverse=True):
        literal = "'" + str(bind.value).replace("'", "''") + "'"
        sql = sql.replace(f":{bind.key}", literal)
    return sql


def budget_figures(
    budget: ResultsBudget, rows: int, size: int, credit: int, over_quota: int, taken: int
) -> dict[str, Any]:
    """The report's budget entry before the stage: how far over the store is, and would be
    after the run's deletions (``credit``: the other stages'; rows as counted, bytes as the
    average row)."""
    before = budget.measure(rows, size)
    per_row = size / rows if rows else 0.0
    after_rows = max(0, rows - credit - over_quota - taken)
    after = budget.measure(after_rows, round(after_rows * per_row))
    return {
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


def rows_over(budget: ResultsBudget, rows: int, size: int, credit: int, over_quota: int) -> int:
    """How many rows the budget must take: what is left after the run's other deletions and
    the quotas, beyond the budget (bytes turned into rows by the average row)."""
    left = max(0, rows - credit - over_quota)
    return budget.rows_over(left, size * left // rows if rows else 0)
