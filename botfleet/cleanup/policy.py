"""Retention rules: ``CLEANUP_POLICY_FILE`` (YAML) on top of the ``*_RETENTION_DAYS`` defaults.

Rules are matched against a bot's ``labels`` in file order and the first match wins, like
kube-janitor's rules (https://codeberg.org/hjacobs/kube-janitor#rules-file). Pure: the file is
read and validated whole, up front, by :mod:`botfleet.cleanup.policy_file`; the rules themselves
are :mod:`botfleet.cleanup.rules`.

.. code-block:: yaml

    rules:
      - name: keep-prod              # optional, shown in reports and audit records
        match: {env: prod}           # every label must be equal; {} matches every bot
        bot_retention_days: 30       # whole days >= 0, "never", or by outcome:
                                     #   {exited: 1, stopped: 7, failed: 30, default: 7}
        result_retention_days: 90    # optional: results of *live* bots older than this go
        max_results_per_bot: 1000    # optional: a live bot keeps its newest 1000 results
        min_results_per_bot: 100     # optional: CLEANUP_RESULTS_BUDGET never goes below this
        priority: 10                 # optional: under the budget, higher is kept longer
        idle_after_days: 14          # optional: soft-delete a live bot with no result for 14d
        failing_after_days: 3        # optional: soft-delete a live bot failed for 3d
        action: soft_delete          # required with idle_after_days / failing_after_days
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botfleet.cleanup.policy_file import PolicyError, load_policy_file, parse_rules, strip_number
from botfleet.cleanup.rules import (
    NEVER,
    OUTCOME_DEFAULT,
    OUTCOMES,
    ResultsBudget,
    Retention,
    Rule,
    rule_to_json,
)
from botfleet.config import Settings
from botfleet.config_types import parse_results_budget
from botfleet.constants import LABEL_HOLD

__all__ = [
    "NEVER",
    "Policy",
    "PolicyError",
    "Retention",
    "Rule",
    "is_held",
    "load_policy_file",
    "parse_rules",
]


@dataclass(frozen=True)
class Policy:
    """Everything that decides what a run may delete; stored in a plan so it can be re-applied."""

    bot_retention_days: int
    result_retention_days: int | None = None
    container_grace_minutes: float = 10.0
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    results_budget: ResultsBudget | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        rules = (
            load_policy_file(settings.cleanup_policy_file) if settings.cleanup_policy_file else ()
        )
        return cls(
            bot_retention_days=settings.bot_retention_days,
            result_retention_days=settings.result_retention_days,
            container_grace_minutes=settings.container_cleanup_grace_minutes,
            rules=rules,
            results_budget=(
                ResultsBudget(*parse_results_budget(settings.cleanup_results_budget))
                if settings.cleanup_results_budget
                else None
            ),
        )

    @property
    def container_grace(self) -> timedelta:
        return timedelta(minutes=self.container_grace_minutes)

    @property
    def results_stage_enabled(self) -> bool:
        """The ``results`` stage runs only if a rule or ``RESULT_RETENTION_DAYS`` asks for it."""
        return self.result_retention_days is not None or any(
            r.result_retention_days is not None for r in self.rules
        )

    @property
    def idle_stage_enabled(self) -> bool:
        """The ``idle_bots`` stage runs only if a rule soft-deletes idle or failing bots."""
        return any(rule.soft_deletes for rule in self.rules)

    @property
    def quota_stage_enabled(self) -> bool:
        """``results_over_quota`` runs only if a rule sets a quota or a budget is set."""
        return self.results_budget is not None or any(
            rule.max_results_per_bot is not None for rule in self.rules
        )

    def rule_for(self, labels: Mapping[str, Any]) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(labels)), None)

    def bot_retention(self, labels: Mapping[str, Any], outcome: str | None = None) -> Retention:
        return self.bot_retention_of(self.rule_for(labels), outcome)

    def result_retention(self, labels: Mapping[str, Any]) -> Retention:
        return self.result_retention_of(self.rule_for(labels))

    def bot_retention_of(self, rule: Rule | None, outcome: str | None = None) -> Retention:
        """A rule without ``bot_retention_days`` falls back to the default; ``never`` keeps.
        By outcome: the bot's outcome's key, else the mapping's ``default``, else the global
        default (an outcome the mapping does not name, or none known: deleted while running,
        or before botfleet kept outcomes)."""
        if rule is not None and rule.bot_retention_by_outcome:
            by_outcome = rule.bot_retention_by_outcome
            if outcome in by_outcome and outcome in OUTCOMES:
                return Retention(by_outcome[outcome], f"{rule.label}, {outcome}")
            if OUTCOME_DEFAULT in by_outcome:
                return Retention(by_outcome[OUTCOME_DEFAULT], f"{rule.label}, {OUTCOME_DEFAULT}")
            return Retention(
                self.bot_retention_days,
                f"{rule.label}, {outcome if outcome in OUTCOMES else 'other outcome'}: default",
            )
        if rule is None or (rule.bot_retention_days is None and not rule.keeps_bots):
            return Retention(self.bot_retention_days, "default" if rule is None else rule.label)
        return Retention(rule.bot_retention_days, rule.label)

    def bot_retentions_of(self, rule: Rule | None) -> list[Retention]:
        """Every retention a rule's bots can have, whatever their outcome."""
        if rule is None or not rule.bot_retention_by_outcome:
            return [self.bot_retention_of(rule)]
        return [self.bot_retention_of(rule, o) for o in (*OUTCOMES, None)]

    def result_retention_of(self, rule: Rule | None) -> Retention:
        if rule is not None and (rule.keeps_results or rule.result_retention_days is not None):
            return Retention(rule.result_retention_days, rule.label)
        return Retention(self.result_retention_days, "default")

    @property
    def catch_all(self) -> bool:
        """A rule with an empty ``match`` takes every bot: the defaults never apply after it."""
        return any(not rule.match for rule in self.rules)

    def snapshot(self) -> dict[str, Any]:
        """JSON for a stored plan: applying the plan later uses exactly these rules."""
        return {
            "bot_retention_days": self.bot_retention_days,
            "result_retention_days": self.result_retention_days,
            "container_grace_minutes": self.container_grace_minutes,
            "rules": [rule_to_json(r) for r in self.rules],
            "results_budget": None
            if self.results_budget is None
            else self.results_budget.to_json(),
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Policy:
        return cls(
            bot_retention_days=int(data["bot_retention_days"]),
            result_retention_days=data.get("result_retention_days"),
            container_grace_minutes=float(data["container_grace_minutes"]),
            rules=parse_rules({"rules": [strip_number(r) for r in data.get("rules", [])]}),
            results_budget=ResultsBudget.from_json(data.get("results_budget")),
        )


def is_held(labels: Mapping[str, Any]) -> bool:
    """Legal hold: ``botfleet.hold=true`` (any case) keeps a bot and its results forever."""
    return str(labels.get(LABEL_HOLD, "")).lower() == "true"
