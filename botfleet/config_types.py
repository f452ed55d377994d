"""The value types of botfleet's settings, each with the check that refuses a bad value in one
line saying what it accepts (``format_validation_error`` in :mod:`botfleet.config` names the
variable). Pure: no I/O but a file's existence."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_WINDOW_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_RESTART_RE = re.compile(r"^on-failure:(\d{1,3})$")
MAX_RESTART_ATTEMPTS = 100
_BUDGET_RE = re.compile(r"^(\d+)\s*([kmgt]?)(i?b)?$")
_BUDGET_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def _strict_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("accepts true, false, 1 or 0")


def _whole_number(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
        raise ValueError("accepts a whole number")
    return value


def _database_url(value: str) -> str:
    if not value.startswith(
        ("postgresql://", "postgresql+asyncpg://", "sqlite:///", "sqlite+aiosqlite:///")
    ):
        raise ValueError("accepts postgresql://user@host:port/db or sqlite:///path/to/file.db")
    return value


def _instance(value: str) -> str:
    if not _INSTANCE_RE.match(value):
        raise ValueError("accepts 1-63 chars of a-z, 0-9, '.', '_', '-' (lower case)")
    return value


def _network(value: str) -> str:
    if not value or value == "bridge":
        raise ValueError("accepts host, none or a user-defined network (not bridge)")
    return value


def _window(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    match = _WINDOW_RE.match(value)
    if (
        not match
        or int(match[1]) > 23
        or int(match[3]) > 23
        or int(match[2]) > 59
        or int(match[4]) > 59
    ):
        raise ValueError("accepts HH:MM-HH:MM, e.g. 01:00-05:00")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("accepts an IANA time zone name such as UTC or Europe/Berlin") from None
    return value


def _yaml_file(value: Path | None) -> Path | None:
    # Its rules are validated where they live, at start-up (cleanup.policy_file.check_policy_file).
    if value is not None and not value.is_file():
        raise ValueError("accepts the path of a readable YAML file")
    return value


def _archive_dir(value: Path | None) -> Path | None:
    # Whether it can be written is the run's question (it may be remounted read-only later):
    # a run that cannot write it deletes nothing, and the archive breaker opens.
    if value is None:
        return None
    if not str(value).strip():
        raise ValueError("accepts the path of a directory (made if missing), or unset")
    if value.exists() and not value.is_dir():
        raise ValueError("accepts the path of a directory; this is a file")
    return value


def _webhook_urls(value: str) -> str:
    # Receivers of events: absolute http(s) URLs, comma-separated; empty turns notifications off.
    for url in (u.strip() for u in value.split(",")):
        if not url:
            continue
        scheme, sep, rest = url.partition("://")
        host = rest.split("/", 1)[0]
        if scheme.lower() not in ("http", "https") or not sep or not host or " " in url:
            raise ValueError(f"accepts comma-separated http:// or https:// URLs; got {url!r}")
    return value


def _one_of(*choices: str) -> Any:
    def check(value: Any) -> Any:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"accepts {', '.join(choices[:-1])} or {choices[-1]}")
        return text

    return check


def _restart_policy(value: str) -> str:
    text = value.strip().lower()
    match = _RESTART_RE.match(text)
    if text != "none" and not (match and 1 <= int(match[1]) <= MAX_RESTART_ATTEMPTS):
        raise ValueError(
            f"accepts none or on-failure:N with N from 1 to {MAX_RESTART_ATTEMPTS} (attempts)"
        )
    return text


def parse_results_budget(value: str) -> tuple[int, str]:
    """``50M`` → (50_000_000, "rows"); ``20GB`` → (20 * 1024**3, "bytes"). Rows count in
    thousands (K, M, G); bytes in powers of 1024, as Prometheus' ``retention.size`` and
    Docker's sizes do."""
    match = _BUDGET_RE.match(value.strip().lower())
    if not match or int(match[1]) <= 0:
        raise ValueError("accepts rows (e.g. 50M) or bytes (e.g. 20GB), greater than 0")
    power = _BUDGET_POWERS[match[2]]
    if match[3]:
        return int(match[1]) * 1024**power, "bytes"
    return int(match[1]) * 1000**power, "rows"


def _results_budget(value: str | None) -> str | None:
    if value is None or not str(value).strip():
        return None
    parse_results_budget(str(value))
    return str(value).strip()


StrictBool = Annotated[bool, BeforeValidator(_strict_bool)]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
InstanceName = Annotated[str, AfterValidator(_instance)]
BotNetwork = Annotated[str, AfterValidator(_network)]
Window = Annotated[str | None, AfterValidator(_window)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
YamlFile = Annotated[Path | None, AfterValidator(_yaml_file)]
WebhookUrls = Annotated[str, AfterValidator(_webhook_urls)]
ArchiveDir = Annotated[
    Path | None, BeforeValidator(lambda v: v or None), AfterValidator(_archive_dir)
]
Runtime = Annotated[Literal["docker", "swarm"], BeforeValidator(_one_of("docker", "swarm"))]
ImagePull = Annotated[
    Literal["if-not-present", "always", "never"],
    BeforeValidator(_one_of("if-not-present", "always", "never")),
]
RestartPolicy = Annotated[str, AfterValidator(_restart_policy)]
ResultsBudgetText = Annotated[str | None, AfterValidator(_results_budget)]
