"""The policy file (``CLEANUP_POLICY_FILE``, YAML) read and validated whole, up front.

An error is one line naming the rule number and the field and quoting the bad value: at start-up
it becomes the one line naming the variable (:func:`check_policy_file`). What the rules mean is
:mod:`botfleet.cleanup.policy`; the rules as data, :mod:`botfleet.cleanup.rules`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from botfleet.cleanup.rules import (
    ACTION_SOFT_DELETE,
    NEVER,
    OUTCOME_DEFAULT,
    OUTCOMES,
    Rule,
)
from botfleet.config import ConfigError, Settings

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


def strip_number(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k != "number"}
