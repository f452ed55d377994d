"""What one scheduled tick did, and what its report means for the timing of the next one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botfleet.cleanup.timing import Outcome
from botfleet.constants import DEPENDENCY_DATABASE, RUN_FAILED

TICK_RAN = "ran"
TICK_FAILED = "failed"
TICK_LOCKED = "locked"
TICK_SKIPPED = "skipped"
TICK_OUTSIDE_WINDOW = "outside_window"


@dataclass(frozen=True)
class Tick:
    """What one scheduled cycle did."""

    kind: str  # ran | failed | locked | skipped | outside_window
    at: datetime
    report: dict[str, Any] | None = None
    reason: str | None = None
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def status(self) -> str | None:
        return str(self.report.get("status")) if self.report else None

    def summary(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "run_id": self.report.get("run_id") if self.report else None,
            "status": self.status,
            "reason": self.reason,
        }


def failed_tick(now: datetime, exc: Exception) -> Tick:
    """A tick whose run raised, its reason the error's type and first line (SQLAlchemy appends
    the statement and a link on further lines)."""
    first_line = (str(exc).splitlines() or [""])[0]
    message = f"{type(exc).__name__}: {first_line}"[:500]
    return Tick(TICK_FAILED, now, reason=message, outcome=Outcome(failed=True))


def outcome_of(report: dict[str, Any], *, hit_time_limit: bool) -> Outcome:
    """Classify a run report for timing: failed, empty, or backlogged (more work waiting)."""
    # A database stage that failed leaves its work undone even when the run is only partial
    # (e.g. a lock timeout): retry it soon. A dead engine is the breakers' business instead.
    failed = report.get("status") == RUN_FAILED or bool(database_errors(report))
    resources = report.get("resources") or {}
    found = sum(int(r.get("found") or 0) for r in resources.values() if isinstance(r, dict))
    return Outcome(
        failed=failed,
        empty=not failed and found == 0,
        backlog=not failed and (hit_time_limit or hit_deletion_cap(report)),
    )


def database_errors(report: dict[str, Any]) -> list[str]:
    """First lines of the report's database errors (not interruptions by a stop request)."""
    return [
        str(e.get("message", "")).splitlines()[0] if e.get("message") else "error"
        for e in report.get("errors") or []
        if isinstance(e, dict) and e.get("dependency") == DEPENDENCY_DATABASE
    ]


def hit_deletion_cap(report: dict[str, Any]) -> bool:
    """Did a stage stop at CLEANUP_MAX_DELETIONS? The service says so in a stage or an error."""
    resources = report.get("resources") or {}
    for stage in resources.values():
        if isinstance(stage, dict) and (stage.get("capped") or stage.get("cap_reached")):
            return True
    for error in report.get("errors") or []:
        if isinstance(error, dict) and "max_deletions" in str(error.get("message", "")).lower():
            return True
    return False
