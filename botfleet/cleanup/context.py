"""What a run is handed, and what its stages work with — never the service that made it.

:class:`RunContext` is built once per service from its settings and connections; a run reads it
and nothing else of the service (style.md, habit 14). :class:`StageContext` adds one run's own
terms: on whose behalf it deletes, by which policy and ``now``, where it may be stopped, whom it
tells its progress.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.archive.writer import Archive, RunArchive
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.sql import Runner, set_limits
from botfleet.cleanup.timing import Governor
from botfleet.config import Settings
from botfleet.notify.outbox import Notifier
from botfleet.runtime.fleet import Fleet
from botfleet.store.session import SessionFactory

Checkpoint = Callable[[], Awaitable[None]]
# (stage, done, total): the CLI's progress bars.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunLimits:
    """The settings a run reads, and nothing else of them."""

    instance: str
    containers_enabled: bool
    max_deletions: int | None
    db_concurrency: int
    container_concurrency: int
    lock_timeout_ms: int
    statement_timeout_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RunLimits:
        return cls(
            instance=settings.botfleet_instance,
            containers_enabled=settings.container_cleanup_enabled,
            max_deletions=settings.cleanup_max_deletions,
            db_concurrency=settings.cleanup_db_concurrency,
            container_concurrency=settings.cleanup_container_concurrency,
            lock_timeout_ms=settings.cleanup_lock_timeout_ms,
            statement_timeout_ms=settings.cleanup_statement_timeout_ms,
        )


@dataclass(frozen=True)
class RunContext:
    """A service's connections, engines, clock, batch governor, stop signal, limits, and where
    its archive and events go."""

    db: AsyncEngine
    sessions: SessionFactory
    fleet: Fleet
    dialect: Dialect
    clock: Callable[[], datetime]
    governor: Governor
    stop: asyncio.Event
    limits: RunLimits
    archive: Archive | None = None  # CLEANUP_ARCHIVE_DIR: every purge batch archived first
    # NOTIFY_WEBHOOK_URLS: a stage's events written in its batch's transaction (idle_bots.py)
    notifier: Notifier | None = None

    async def bound(self, runner: Runner, *, async_commit: bool = False) -> None:
        """PostgreSQL: CLEANUP_LOCK_TIMEOUT_MS and CLEANUP_STATEMENT_TIMEOUT_MS for the
        transaction ``runner`` has open (and no WAL flush at its commit, if asked)."""
        if self.dialect.postgres:
            limits = self.limits
            await set_limits(
                runner, limits.lock_timeout_ms, limits.statement_timeout_ms, async_commit
            )


@dataclass
class RunRequest:
    """What was asked of a run; ``started`` is reset once the run holds the lock."""

    run_id: uuid.UUID
    trigger: str
    actor: str
    dry_run: bool
    started: datetime
    only: frozenset[str] | None = None
    skip_engines: frozenset[str] = frozenset()  # engines behind an open breaker
    progress: Progress | None = None


@dataclass(frozen=True)
class StageContext:
    """One run's deletions: for which run and actor, by which policy and ``now`` (the plan's:
    every cutoff derives from it), stopped where, reported to whom."""

    run: RunContext
    run_id: uuid.UUID
    actor: str
    policy: Policy
    now: datetime
    checkpoint: Checkpoint
    progress: Progress | None = None
    archive: RunArchive | None = None  # this run's archive directory, opened before any purge

    def report_progress(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)
