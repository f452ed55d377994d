"""One retention rule of the policy file, what it decides for a bot, and the store's budget.

Pure data (the validation that builds them is :mod:`botfleet.cleanup.policy`). A rule's fields
come in families: how long a deleted bot is kept (one figure, ``never``, or one per outcome),
how long a live bot's results are kept, how many results a live bot keeps (a quota, a floor
under the store's budget, a priority), and when a live bot is soft-deleted for idling or failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botfleet.constants import STATUS_EXITED, STATUS_FAILED, STATUS_STOPPED

NEVER = "never"
# How a bot ended (its status when it was soft-deleted): the keys of retention by outcome.
OUTCOMES = (STATUS_EXITED, STATUS_STOPPED, STATUS_FAILED)
# In a mapping by outcome: what applies to the other outcomes (else the global default).
OUTCOME_DEFAULT = "default"
ACTION_SOFT_DELETE = "soft_delete"
BUDGET_ROWS = "rows"
BUDGET_BYTES = "bytes"


@dataclass(frozen=True)
class Rule:
    """One retention rule. A ``*_days`` of None means "not set here": the default applies,
    unless the matching ``keeps_*`` flag says the file wrote ``never``.

    ``bot_retention_by_outcome`` maps an outcome (or ``default``) to days, None for ``never``;
    when it is set, ``bot_retention_days`` is not.
    """

    number: int  # 1-based, as operators count rules in the file
    match: Mapping[str, str]
    bot_retention_days: int | None = None
    result_retention_days: int | None = None
    keeps_bots: bool = False
    keeps_results: bool = False
    name: str | None = None
    bot_retention_by_outcome: Mapping[str, int | None] = field(default_factory=dict)
    max_results_per_bot: int | None = None
    min_results_per_bot: int | None = None
    priority: int = 0
    idle_after_days: int | None = None
    failing_after_days: int | None = None
    action: str | None = None

    def matches(self, labels: Mapping[str, Any]) -> bool:
        return all(labels.get(key) == value for key, value in self.match.items())

    @property
    def label(self) -> str:
        return f"rule {self.number}" + (f" ({self.name})" if self.name else "")

    @property
    def soft_deletes(self) -> bool:
        """The rule soft-deletes idle or failing live bots."""
        return self.action == ACTION_SOFT_DELETE and (
            self.idle_after_days is not None or self.failing_after_days is not None
        )

    @property
    def floor(self) -> int:
        """How many of a bot's newest results the budget never takes."""
        return self.min_results_per_bot or 0


@dataclass(frozen=True)
class Retention:
    """The retention that applies to one bot, and where it came from (for reasons and audit)."""

    days: int | None  # None: kept forever
    source: str  # "rule 2 (keep-prod)", "rule 2 (keep-prod), failed" or "default"

    def cutoff(self, now: datetime) -> datetime | None:
        return None if self.days is None else now - timedelta(days=self.days)

    def describe(self) -> str:
        kept = "never purged" if self.days is None else f"{self.days}d"
        return f"{self.source}: {kept}"


@dataclass(frozen=True)
class ResultsBudget:
    """``CLEANUP_RESULTS_BUDGET``: the most rows, or bytes, the results table may hold."""

    amount: int
    unit: str  # BUDGET_ROWS or BUDGET_BYTES

    def rows_over(self, rows: int, size_bytes: int) -> int:
        """How many rows must go for the table to fit; bytes count by the average row
        (``size_bytes`` / ``rows``), rounded up so that the table does fit."""
        if self.unit == BUDGET_ROWS:
            return max(0, rows - self.amount)
        if rows == 0 or size_bytes <= self.amount:
            return 0
        return min(rows, math.ceil((size_bytes - self.amount) * rows / size_bytes))

    def measure(self, rows: int, size_bytes: int) -> int:
        """The table's size in this budget's unit."""
        return rows if self.unit == BUDGET_ROWS else size_bytes

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "unit": self.unit}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ResultsBudget | None:
        return None if not data else cls(int(data["amount"]), str(data["unit"]))


def rule_to_json(rule: Rule) -> dict[str, Any]:
    """A rule as the file would write it (plus its number): stored plans re-read it."""
    out: dict[str, Any] = {"number": rule.number, "match": dict(rule.match)}
    if rule.name:
        out["name"] = rule.name
    if rule.bot_retention_by_outcome:
        out["bot_retention_days"] = {
            k: NEVER if v is None else v for k, v in rule.bot_retention_by_outcome.items()
        }
    elif rule.keeps_bots:
        out["bot_retention_days"] = NEVER
    elif rule.bot_retention_days is not None:
        out["bot_retention_days"] = rule.bot_retention_days
    if rule.keeps_results:
        out["result_retention_days"] = NEVER
    elif rule.result_retention_days is not None:
        out["result_retention_days"] = rule.result_retention_days
    for key in (
        "max_results_per_bot",
        "min_results_per_bot",
        "idle_after_days",
        "failing_after_days",
        "action",
    ):
        if getattr(rule, key) is not None:
            out[key] = getattr(rule, key)
    if rule.priority:
        out["priority"] = rule.priority
    return out
