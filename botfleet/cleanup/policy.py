"""Retention rules: ``CLEANUP_POLICY_FILE`` (YAML) on top of the ``*_RETENTION_DAYS`` defaults.

Rules are matched against a bot's ``labels`` in file order and the first match wins, like
kube-janitor's rules (https://codeberg.org/hjacobs/kube-janitor#rules-file). The file is validated
whole, up front: an error names the rule number and the field and quotes the bad value. Pure: no
I/O except :func:`load_policy_file`. The rules themselves are :mod:`botfleet.cleanup.rules`.

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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from botfleet.cleanup.rules import (
    ACTION_SOFT_DELETE,
    NEVER,
    OUTCOME_DEFAULT,
    OUTCOMES,
    ResultsBudget,
    Retention,
    Rule,
    rule_to_json,
)
from botfleet.config import ConfigError, Settings
from botfleet.config_types import parse_results_budget
from botfleet.constants import LABEL_HOLD

__all__ = ["NEVER", "Policy", "PolicyError", "Retention", "Rule", "is_held", "load_policy_file"]

_EFFECT_KEYS = (
    "bot_retention_days",
    "result_retention_days",
    "max_results_per_bot",
    "min_results_per_bot",
    "idle_after_days",
    "failing_after_days",
)
_RULE_KEYS = frozenset({"name", "match", "priority", "action", *_EFFECT_KEYS})
# Label keys as Docker and Kubernetes allow them; also keeps them safe inside a JSON path.
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,252}$")


class PolicyError(ValueError):
    """The policy file is unusable; ``str()`` is one line naming the rule, the field, the value."""


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
            rules=parse_rules({"rules": [_strip_number(r) for r in data.get("rules", [])]}),
            results_budget=ResultsBudget.from_json(data.get("results_budget")),
        )


def is_held(labels: Mapping[str, Any]) -> bool:
    """Legal hold: ``botfleet.hold=true`` (any case) keeps a bot and its results forever."""
    return str(labels.get(LABEL_HOLD, "")).lower() == "true"


# --- loading and validation ---------------------------------------------------------------------
def check_policy_file(settings: Settings) -> None:
    """At start-up: CLEANUP_POLICY_FILE must hold valid rules, or the process stops with one
    line naming the variable (:class:`~botfleet.config.ConfigError`)."""
    path = settings.cleanup_policy_file
    if path is None:
        return
    try:
        load_policy_file(path)
    except PolicyError as exc:
        raise ConfigError(f"invalid CLEANUP_POLICY_FILE={str(path)!r}: {exc}") from None


def load_policy_file(path: Path | str) -> tuple[Rule, ...]:
    """Read and validate the policy file; :class:`PolicyError` with one line on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise PolicyError(f"not valid YAML{where}: {problem}") from None
    return parse_rules(data)


def parse_rules(data: Any) -> tuple[Rule, ...]:
    if data is None:
        return ()
    if not isinstance(data, dict) or set(data) - {"rules"}:
        raise PolicyError("accepts a mapping with one key, 'rules' (a list of rules)")
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise PolicyError(f"'rules' accepts a list of rules, got {_quote(rules)}")
    return tuple(_parse_rule(number, raw) for number, raw in enumerate(rules, start=1))


def _parse_rule(number: int, raw: Any) -> Rule:
    where = f"rule {number}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: accepts a mapping of {sorted(_RULE_KEYS)}, got {_quote(raw)}")
    unknown = sorted(str(k) for k in set(raw) - _RULE_KEYS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown field {unknown[0]!r} (accepts {', '.join(sorted(_RULE_KEYS))})"
        )
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise PolicyError(f"{where}: field name accepts text, got {_quote(name)}")
    if not any(key in raw for key in _EFFECT_KEYS):
        raise PolicyError(f"{where}: sets none of {', '.join(_EFFECT_KEYS)}")
    bot_days, keeps_bots, by_outcome = _bot_days(where, raw.get("bot_retention_days"))
    result_days, keeps_results = _days(
        where, "result_retention_days", raw.get("result_retention_days")
    )
    most = _count(where, "max_results_per_bot", raw.get("max_results_per_bot"), least=1)
    floor = _count(where, "min_results_per_bot", raw.get("min_results_per_bot"), least=0)
    if most is not None and floor is not None and floor > most:
        raise PolicyError(
            f"{where}: field min_results_per_bot ({floor}) exceeds max_results_per_bot ({most})"
        )
    priority = raw.get("priority", 0)
    if type(priority) is not int:
        raise PolicyError(f"{where}: field priority accepts a whole number, got {_quote(priority)}")
    idle = _count(where, "idle_after_days", raw.get("idle_after_days"), least=1)
    failing = _count(where, "failing_after_days", raw.get("failing_after_days"), least=1)
    action = raw.get("action")
    if action is not None and action != ACTION_SOFT_DELETE:
        raise PolicyError(
            f"{where}: field action accepts {ACTION_SOFT_DELETE}, got {_quote(action)}"
        )
    if (idle is not None or failing is not None) and action is None:
        raise PolicyError(
            f"{where}: field action is required with idle_after_days or failing_after_days"
            f" (accepts {ACTION_SOFT_DELETE})"
        )
    if action is not None and idle is None and failing is None:
        raise PolicyError(f"{where}: field action needs idle_after_days or failing_after_days")
    return Rule(
        number=number,
        match=_match(where, raw.get("match", {})),
        bot_retention_days=bot_days,
        result_retention_days=result_days,
        keeps_results=keeps_results,
        keeps_bots=keeps_bots,
        name=name,
        bot_retention_by_outcome=by_outcome,
        max_results_per_bot=most,
        min_results_per_bot=floor,
        priority=priority,
        idle_after_days=idle,
        failing_after_days=failing,
        action=action,
    )


def _bot_days(where: str, value: Any) -> tuple[int | None, bool, dict[str, int | None]]:
    """A number, ``never``, or a mapping by outcome of either (``default`` for the rest)."""
    if not isinstance(value, dict):
        days, keeps = _days(where, "bot_retention_days", value)
        return days, keeps, {}
    keys = (*OUTCOMES, OUTCOME_DEFAULT)
    if not value:
        raise PolicyError(
            f"{where}: field bot_retention_days accepts a mapping of {', '.join(keys)}, got {{}}"
        )
    out: dict[str, int | None] = {}
    for key, days in value.items():
        if key not in keys:
            raise PolicyError(
                f"{where}: field bot_retention_days has an unknown outcome {_quote(key)}"
                f" (accepts {', '.join(keys)})"
            )
        number, keeps = _days(where, f"bot_retention_days.{key}", days)
        if number is None and not keeps:
            raise PolicyError(
                f"{where}: field bot_retention_days.{key} accepts a whole number of days >= 0"
                " or 'never', got None"
            )
        out[key] = number
    return None, False, out


def _count(where: str, field_name: str, value: Any, *, least: int) -> int | None:
    if value is None:
        return None
    if type(value) is int and value >= least:
        return value
    raise PolicyError(
        f"{where}: field {field_name} accepts a whole number >= {least}, got {_quote(value)}"
    )


def _days(where: str, field_name: str, value: Any) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    if isinstance(value, str) and value.strip().lower() == NEVER:
        return None, True
    if type(value) is int and value >= 0:
        return value, False
    raise PolicyError(
        f"{where}: field {field_name} accepts a whole number of days >= 0 or 'never', "
        f"got {_quote(value)}"
    )


def _match(where: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(
            f"{where}: field match accepts a mapping of label: value, got {_quote(value)}"
        )
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.match(key):
            raise PolicyError(f"{where}: field match has an invalid label key {_quote(key)}")
        if isinstance(val, dict | list) or val is None:
            raise PolicyError(
                f"{where}: field match.{key} accepts a single label value, got {_quote(val)}"
            )
        out[key] = str(val).lower() if isinstance(val, bool) else str(val)
    return out


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _strip_number(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k != "number"}
