"""The eligibility rules as SQL, so that selection and every DELETE re-state them in the database.

Set-wise twins of :func:`~botfleet.cleanup.eligibility.bot_purge_decision` and
:func:`~botfleet.cleanup.eligibility.result_decision` (tests hold them equal on both backends).
First match wins becomes a ``CASE``; a rule's labels become ``labels @> '{…}'`` on PostgreSQL and
``json_extract`` on SQLite. The range on ``deleted_at`` comes first so the partial index
``ix_bots_deleted_at`` bounds the scan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam
from sqlalchemy.sql.elements import BindParameter

from botfleet.cleanup.policy import Policy, Retention, Rule
from botfleet.cleanup.rules import OUTCOMES
from botfleet.constants import LABEL_HOLD
from botfleet.store.models import UTCDateTime


@dataclass
class Fragment:
    """A piece of SQL text with the bound parameters it refers to."""

    sql: str
    binds: list[BindParameter[Any]] = field(default_factory=list)


class Dialect:
    """The few spellings that differ between PostgreSQL and SQLite."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.false = "false" if postgres else "0"
        self.true = "true" if postgres else "1"

    def label_match(self, alias: str, match: dict[str, str], name: str) -> Fragment:
        if not match:
            return Fragment(self.true)
        if self.postgres:
            value = json.dumps(match, sort_keys=True)
            return Fragment(
                f"{alias}.labels @> CAST(CAST(:{name} AS text) AS jsonb)",
                [bindparam(name, value, type_=String())],
            )
        parts, binds = [], []
        for i, (key, val) in enumerate(sorted(match.items())):
            parts.append(f"json_extract({alias}.labels, '$.\"{key}\"') = :{name}_{i}")
            binds.append(bindparam(f"{name}_{i}", val, type_=String()))
        return Fragment("(" + " AND ".join(parts) + ")", binds)

    def held(self, alias: str) -> str:
        if self.postgres:
            return f"lower(coalesce({alias}.labels->>'{LABEL_HOLD}', '')) = 'true'"
        path = f"'$.\"{LABEL_HOLD}\"'"
        return (
            f"(lower(coalesce(json_extract({alias}.labels, {path}), '')) = 'true'"
            f" OR coalesce(json_type({alias}.labels, {path}), '') = 'true')"
        )


def _cutoff(name: str, value: datetime) -> BindParameter[Any]:
    return bindparam(name, value, type_=UTCDateTime())


def _case(
    dialect: Dialect,
    alias: str,
    rules: tuple[Rule, ...],
    branch: list[Fragment],
    default: Fragment,
    prefix: str,
) -> Fragment:
    """``CASE WHEN <rule 1 matches> THEN … ELSE <default> END``: first match wins."""
    if not rules:
        return default
    sql, binds = ["CASE"], []
    for rule, then in zip(rules, branch, strict=True):
        cond = dialect.label_match(alias, dict(rule.match), f"{prefix}m{rule.number}")
        sql.append(f"WHEN {cond.sql} THEN {then.sql}")
        binds += cond.binds + then.binds
    sql.append(f"ELSE {default.sql} END")
    binds += default.binds
    return Fragment(" ".join(sql), binds)


def _older(
    dialect: Dialect, column: str, retention: Retention, now: datetime, name: str
) -> Fragment:
    cutoff = retention.cutoff(now)
    if cutoff is None:
        return Fragment(dialect.false)
    return Fragment(f"({column} < :{name})", [_cutoff(name, cutoff)])


def _by_outcome(
    alias: str, rule: Rule | None, branch: Callable[[str | None, str], Fragment], name: str
) -> Fragment:
    """A rule's bots by how they ended: ``CASE status_at_deletion WHEN …`` for a rule with
    retention by outcome, else its one branch. Outcomes are constants, never user text."""
    if rule is None or not rule.bot_retention_by_outcome:
        return branch(None, name)
    sql, binds = ["CASE"], []
    for i, outcome in enumerate(OUTCOMES):
        then = branch(outcome, f"{name}o{i}")
        sql.append(f"WHEN {alias}.status_at_deletion = '{outcome}' THEN {then.sql}")
        binds += then.binds
    other = branch(None, f"{name}od")
    sql.append(f"ELSE {other.sql} END")
    return Fragment(" ".join(sql), [*binds, *other.binds])


def max_bot_cutoff(policy: Policy, now: datetime) -> datetime | None:
    """The latest cutoff any bot can have: the index range that bounds every bot query."""
    rules: list[Rule | None] = [*policy.rules, *([] if policy.catch_all else [None])]
    cutoffs = [r.cutoff(now) for rule in rules for r in policy.bot_retentions_of(rule)]
    known = [c for c in cutoffs if c is not None]
    return max(known) if known else None


@dataclass
class BotPredicate:
    """Soft-deleted bots past their retention, in parts: the index range, the legal hold, and the
    per-rule expiry. ``eligible`` is what every bot DELETE re-states."""

    range: str
    held: str
    expired: str
    binds: list[BindParameter[Any]]

    @property
    def eligible(self) -> str:
        return f"{self.range} AND NOT ({self.held}) AND ({self.expired})"


def bot_predicate(
    dialect: Dialect, policy: Policy, now: datetime, alias: str = "b"
) -> BotPredicate:
    """Binds ``max_cutoff`` and one cutoff per rule; a policy that keeps everything is FALSE."""
    top = max_bot_cutoff(policy, now)
    col = f"{alias}.deleted_at"
    if top is None:
        return BotPredicate(dialect.false, dialect.held(alias), dialect.false, [])

    def older(rule: Rule | None) -> Callable[[str | None, str], Fragment]:
        return lambda outcome, name: _older(
            dialect, col, policy.bot_retention_of(rule, outcome), now, name
        )

    branches = [_by_outcome(alias, r, older(r), f"bc{r.number}") for r in policy.rules]
    default = _older(dialect, col, policy.bot_retention_of(None), now, "bc0")
    case = _case(dialect, alias, policy.rules, branches, default, "b")
    return BotPredicate(
        f"{col} IS NOT NULL AND {col} < :max_cutoff",
        dialect.held(alias),
        case.sql,
        [_cutoff("max_cutoff", top), *case.binds],
    )


def bot_reason(dialect: Dialect, policy: Policy, alias: str = "b") -> Fragment:
    """Why a purged bot went, for its audit record: the rule (or default) and its retention."""

    def why(rule: Rule | None) -> Callable[[str | None, str], Fragment]:
        return lambda outcome, name: Fragment(
            f":{name}", [bindparam(name, _why(policy, rule, outcome), String())]
        )

    branches = [_by_outcome(alias, r, why(r), f"br{r.number}") for r in policy.rules]
    default = why(None)(None, "br0")
    return _case(dialect, alias, policy.rules, branches, default, "r")


def _why(policy: Policy, rule: Rule | None, outcome: str | None = None) -> str:
    return f"bots: expired ({policy.bot_retention_of(rule, outcome).describe()})"


def bot_reason_for(policy: Policy, labels: dict[str, object], outcome: str | None = None) -> str:
    """The same reason text as :func:`bot_reason`, computed in Python (the SQLite path)."""
    return f"bots: expired ({policy.bot_retention(labels, outcome).describe()})"


def result_eligible(
    dialect: Dialect, policy: Policy, now: datetime, bot: str = "b", result: str = "r"
) -> Fragment:
    """A result of a live bot, not on hold, older than its result retention."""
    col = f"{result}.created_at"
    branches = [
        _older(dialect, col, policy.result_retention_of(r), now, f"rc{r.number}")
        for r in policy.rules
    ]
    default = _older(dialect, col, policy.result_retention_of(None), now, "rc0")
    cutoffs = [c for c in _result_cutoffs(policy, now) if c is not None]
    if not cutoffs:
        return Fragment(dialect.false)
    case = _case(dialect, bot, policy.rules, branches, default, "rr")
    return Fragment(
        f"{bot}.deleted_at IS NULL AND {col} < :max_result_cutoff"
        f" AND NOT ({dialect.held(bot)}) AND ({case.sql})",
        [_cutoff("max_result_cutoff", max(cutoffs)), *case.binds],
    )


def _result_cutoffs(policy: Policy, now: datetime) -> list[datetime | None]:
    rules: list[Rule | None] = [*policy.rules, *([] if policy.catch_all else [None])]
    return [policy.result_retention_of(rule).cutoff(now) for rule in rules]
