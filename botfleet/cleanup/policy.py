"""Retention rules: ``CLEANUP_POLICY_FILE`` (YAML) on top of the ``*_RETENTION_DAYS`` defaults.

Rules are matched against a bot's ``labels`` in file order and the first match wins, like
kube-janitor's rules (https://codeberg.org/hjacobs/kube-janitor#rules-file). The file is validated
whole, up front: an error names the rule number and the field and quotes the bad value. Pure: no
I/O except :func:`load_policy_file`.

.. code-block:: yaml

    rules:
      - name: keep-prod              # optional, shown in reports and audit records
        match: {env: prod}           # every label must be equal; {} matches every bot
        bot_retention_days: 30       # whole days >= 0, or "never"
        result_retention_days: 90    # optional: results of *live* bots older than this go
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from botfleet.config import ConfigError, Settings
from botfleet.constants import LABEL_HOLD

NEVER = "never"
_RULE_KEYS = frozenset({"name", "match", "bot_retention_days", "result_retention_days"})
# Label keys as Docker and Kubernetes allow them; also keeps them safe inside a JSON path.
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,252}$")


class PolicyError(ValueError):
    """The policy file is unusable; ``str()`` is one line naming the rule, the field, the value."""


@dataclass(frozen=True)
class Rule:
    """One retention rule. A ``*_days`` of None means "not set here": the default applies,
    unless the matching ``keeps_*`` flag says the file wrote ``never``."""

    number: int  # 1-based, as operators count rules in the file
    match: Mapping[str, str]
    bot_retention_days: int | None = None
    result_retention_days: int | None = None
    keeps_bots: bool = False
    keeps_results: bool = False
    name: str | None = None

    def matches(self, labels: Mapping[str, Any]) -> bool:
        return all(labels.get(key) == value for key, value in self.match.items())

    @property
    def label(self) -> str:
        return f"rule {self.number}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Retention:
    """The retention that applies to one bot, and where it came from (for reasons and audit)."""

    days: int | None  # None: kept forever
    source: str  # "rule 2 (keep-prod)" or "default"

    def cutoff(self, now: datetime) -> datetime | None:
        return None if self.days is None else now - timedelta(days=self.days)

    def describe(self) -> str:
        kept = "never purged" if self.days is None else f"{self.days}d"
        return f"{self.source}: {kept}"


@dataclass(frozen=True)
class Policy:
    """Everything that decides what a run may delete; stored in a plan so it can be re-applied."""

    bot_retention_days: int
    result_retention_days: int | None = None
    container_grace_minutes: float = 10.0
    rules: tuple[Rule, ...] = field(default_factory=tuple)

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

    def rule_for(self, labels: Mapping[str, Any]) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(labels)), None)

    def bot_retention(self, labels: Mapping[str, Any]) -> Retention:
        return self.bot_retention_of(self.rule_for(labels))

    def result_retention(self, labels: Mapping[str, Any]) -> Retention:
        return self.result_retention_of(self.rule_for(labels))

    def bot_retention_of(self, rule: Rule | None) -> Retention:
        """A rule without ``bot_retention_days`` falls back to the default; ``never`` keeps."""
        if rule is None or (rule.bot_retention_days is None and not rule.keeps_bots):
            return Retention(self.bot_retention_days, "default" if rule is None else rule.label)
        return Retention(rule.bot_retention_days, rule.label)

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
            "rules": [_rule_to_json(r) for r in self.rules],
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Policy:
        return cls(
            bot_retention_days=int(data["bot_retention_days"]),
            result_retention_days=data.get("result_retention_days"),
            container_grace_minutes=float(data["container_grace_minutes"]),
            rules=parse_rules({"rules": [_strip_number(r) for r in data.get("rules", [])]}),
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
    if "bot_retention_days" not in raw and "result_retention_days" not in raw:
        raise PolicyError(f"{where}: sets neither bot_retention_days nor result_retention_days")
    bot_days, keeps_bots = _days(where, "bot_retention_days", raw.get("bot_retention_days"))
    result_days, keeps_results = _days(
        where, "result_retention_days", raw.get("result_retention_days")
    )
    return Rule(
        number=number,
        match=_match(where, raw.get("match", {})),
        bot_retention_days=bot_days,
        result_retention_days=result_days,
        keeps_results=keeps_results,
        keeps_bots=keeps_bots,
        name=name,
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


def _rule_to_json(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"number": rule.number, "match": dict(rule.match)}
    if rule.name:
        out["name"] = rule.name
    if rule.keeps_bots:
        out["bot_retention_days"] = NEVER
    elif rule.bot_retention_days is not None:
        out["bot_retention_days"] = rule.bot_retention_days
    if rule.keeps_results:
        out["result_retention_days"] = NEVER
    elif rule.result_retention_days is not None:
        out["result_retention_days"] = rule.result_retention_days
    return out


def _strip_number(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k != "number"}
