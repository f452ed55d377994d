"""Circuit breakers per dependency: stop hammering a database or engine that keeps failing.

A breaker opens after ``threshold`` consecutive failures; while open, the scheduler skips that
dependency (a dead engine's container stage, or the whole run if the database is down). After
``cooldown`` it turns half-open: the next run probes it once; success closes it, failure re-opens
it. Pure: every method takes ``now``, so tests drive the clock.
See https://martinfowler.com/bliki/CircuitBreaker.html
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botfleet.constants import (
    BREAKER_CLOSED,
    BREAKER_HALF_OPEN,
    BREAKER_OPEN,
    DEPENDENCY_ARCHIVE,
    DEPENDENCY_DATABASE,
)

log = logging.getLogger(__name__)

ENGINE_PREFIX = "engine:"
_ITEM_MESSAGE = re.compile(r"^[0-9a-f]{12}: ")


def engine_dependency(engine: str) -> str:
    """The breaker key of one container engine (its name as in ``bots.engine``)."""
    return f"{ENGINE_PREFIX}{engine}"


@dataclass
class Breaker:
    threshold: int
    cooldown: timedelta
    state: str = BREAKER_CLOSED
    failures: int = 0
    since: datetime | None = None
    last_error: str | None = None

    def allows(self, now: datetime) -> bool:
        """May this dependency be used now? Moves open → half-open once the cool-down is over."""
        if (
            self.state == BREAKER_OPEN
            and self.since is not None
            and now - self.since >= self.cooldown
        ):
            self.state, self.since = BREAKER_HALF_OPEN, now
        return self.state != BREAKER_OPEN

    def reopens_at(self) -> datetime | None:
        """When an open breaker will let a probe through (None unless open)."""
        if self.state != BREAKER_OPEN or self.since is None:
            return None
        return self.since + self.cooldown

    def success(self, now: datetime) -> None:
        if self.state != BREAKER_CLOSED:
            self.state, self.since = BREAKER_CLOSED, now
        self.failures = 0

    def failure(self, now: datetime, error: str) -> None:
        self.failures += 1
        self.last_error = error[:500]
        # A failed probe re-opens at once: the cool-down starts again.
        if self.state == BREAKER_HALF_OPEN or (
            self.state == BREAKER_CLOSED and self.failures >= self.threshold
        ):
            self.state, self.since = BREAKER_OPEN, now

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since.isoformat() if self.since else None,
            "failures": self.failures,
            "last_error": self.last_error,
        }


@dataclass
class Breakers:
    """One breaker per dependency name: ``database`` and ``engine:<name>`` for each engine."""

    threshold: int
    cooldown: timedelta
    by_name: dict[str, Breaker] = field(default_factory=dict)

    @classmethod
    def for_dependencies(
        cls, names: Iterable[str], *, threshold: int, cooldown: timedelta
    ) -> Breakers:
        breakers = cls(threshold=threshold, cooldown=cooldown)
        for name in names:
            breakers.get(name)
        return breakers

    @classmethod
    def for_cleanup(
        cls, engines: Iterable[str], *, archive: bool, threshold: int, cooldown: timedelta
    ) -> Breakers:
        """The scheduler's: the database, the archive when one is configured, each engine."""
        names = [DEPENDENCY_DATABASE, *([DEPENDENCY_ARCHIVE] if archive else [])]
        names += [engine_dependency(e) for e in engines]
        return cls.for_dependencies(names, threshold=threshold, cooldown=cooldown)

    def get(self, name: str) -> Breaker:
        if name not in self.by_name:
            self.by_name[name] = Breaker(threshold=self.threshold, cooldown=self.cooldown)
        return self.by_name[name]

    def allows(self, name: str, now: datetime) -> bool:
        return self.get(name).allows(now)

    def blocked_engines(self, engines: Iterable[str], now: datetime) -> frozenset[str]:
        """Engines whose breaker is open now: the run passes them as ``skip_engines``."""
        return frozenset(e for e in engines if not self.allows(engine_dependency(e), now))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: breaker.snapshot() for name, breaker in sorted(self.by_name.items())}

    def why_not_run(self, now: datetime, *, archive: bool) -> str | None:
        """Why a scheduled run must be skipped now (None: it may run): the database's breaker
        is open, or — for a run that would archive — the archive's (no archive, no delete,
        until the cool-down lets a probe through)."""
        database = self.get(DEPENDENCY_DATABASE)
        if not database.allows(now):
            return f"database circuit breaker open: {database.last_error}"
        if archive and not self.allows(DEPENDENCY_ARCHIVE, now):
            return f"archive circuit breaker open: {self.get(DEPENDENCY_ARCHIVE).last_error}"
        return None

    def opened_or_closed(self, names: Iterable[str]) -> list[tuple[str, str, str | None]]:
        """(name, state, last error) of those of ``names`` now open or closed (not half-open):
        what receivers are told."""
        return [
            (name, self.get(name).state, self.get(name).last_error)
            for name in names
            if self.get(name).state in (BREAKER_OPEN, BREAKER_CLOSED)
        ]


@dataclass(frozen=True)
class Observation:
    """What one run said about each dependency it used: ``{name: error or None}``."""

    outcomes: dict[str, str | None]


def observe_report(
    report: dict[str, Any],
    *,
    engines_used: Iterable[str],
    database_used: bool = True,
    archive_used: bool = False,
) -> Observation:
    """Read a run report's ``errors`` into per-dependency success or failure.

    Only dependencies the run really used count: a skipped engine says nothing about its health,
    nor a dry run about CLEANUP_ARCHIVE_DIR.
    """
    outcomes: dict[str, str | None] = {}
    if database_used:
        outcomes[DEPENDENCY_DATABASE] = None
    if archive_used:
        outcomes[DEPENDENCY_ARCHIVE] = None
    used = set(engines_used)
    for engine in used:
        outcomes[engine_dependency(engine)] = None
    for error in report.get("errors") or []:
        if not isinstance(error, dict):
            continue
        message = str(error.get("message", "error"))
        failed_engine = error.get("engine")
        if _item_error(error, message):
            continue
        if failed_engine is not None and failed_engine in used:
            outcomes[engine_dependency(str(failed_engine))] = message
        elif error.get("dependency") == DEPENDENCY_DATABASE and database_used:
            outcomes[DEPENDENCY_DATABASE] = message
        elif error.get("dependency") == DEPENDENCY_ARCHIVE and archive_used:
            outcomes[DEPENDENCY_ARCHIVE] = message
    return Observation(outcomes)


def _item_error(error: dict[str, Any], message: str) -> bool:
    """One container's failure (``<id12>: …``) is not the engine's: it must not trip a breaker."""
    return "item" in error or bool(_ITEM_MESSAGE.match(message))


def apply_observation(breakers: Breakers, observation: Observation, now: datetime) -> list[str]:
    """Feed one run's outcomes to the breakers; return (and log) the names whose state
    changed."""
    changed = []
    for name, error in observation.outcomes.items():
        breaker = breakers.get(name)
        before = breaker.state
        if error is None:
            breaker.success(now)
        else:
            breaker.failure(now, error)
        if breaker.state != before:
            changed.append(name)
            log.warning(
                "circuit breaker %s is now %s",
                name,
                breaker.state,
                extra={"last_error": breaker.last_error},
            )
    return changed
