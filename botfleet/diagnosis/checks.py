"""What ``botfleet doctor`` reports: a check with its verdict and next step, and the rows its
gatherers read (runs, holders of the cleanup lock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
RUNS_SHOWN = 5


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # ok | warn | fail | skip
    detail: str
    next_step: str = ""
    lines: tuple[str, ...] = ()  # extra rows worth printing (the last runs, the lock holder)

    @property
    def needs_attention(self) -> bool:
        return self.verdict in (WARN, FAIL)


@dataclass(frozen=True)
class RunRow:
    id: str
    trigger: str
    actor: str
    dry_run: bool
    status: str
    started_at: datetime
    finished_at: datetime | None
    owner: str | None
    errors: list[str] = field(default_factory=list)
    counts: str = ""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    who: str  # application name, client address, or the process's command line
    since: datetime | None = None
