"""The cleanup under test, on the test's own store: a service built as the app builds it, a clock
the test moves by hand, and shorthands for a run report's figures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botfleet.cleanup.batches import BatchLoop
from botfleet.cleanup.context import RunContext, RunLimits, StageContext
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from tests.support.store import Store


class Clock:
    """A clock the test moves by hand: ``now`` is all the service knows of time."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def make_service(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None, **kw: Any
) -> CleanupService:
    """A cleanup service on ``store``'s database and the engines of ``settings``."""
    return CleanupService(
        settings=settings,
        db=store.engine,
        fleet=Fleet.from_settings(settings),
        clock=clock or (lambda: datetime.now(UTC)),
        **kw,
    )


def found(report: dict[str, Any]) -> dict[str, int]:
    return {kind: stats["found"] for kind, stats in report["resources"].items()}


def deleted(report: dict[str, Any]) -> dict[str, int]:
    return {kind: stats["deleted"] for kind, stats in report["resources"].items()}


def days(n: float) -> timedelta:
    return timedelta(days=n)


class Recorder:
    """A batch governor that keeps to a size and remembers each batch it was told about."""

    pause_seconds = 0.0

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: list[int] = []

    def next_size(self) -> int:
        return self.size

    def observe(self, seconds: float, rows: int) -> None:
        assert seconds >= 0
        self.seen.append(rows)


def batch_loop(store: Store | None, *, concurrency: int, size: int, now: datetime) -> BatchLoop:
    """A stage's batch loop as a run builds it, on PostgreSQL and the test's store (None: no
    database, for a test of the loop's bookkeeping alone), with a :class:`Recorder`."""

    async def checkpoint() -> None:
        return None

    ctx = RunContext(
        db=store.engine if store is not None else None,  # type: ignore[arg-type]
        sessions=store.sessions if store is not None else None,  # type: ignore[arg-type]
        fleet=Fleet([]),
        dialect=Dialect(postgres=True),
        clock=lambda: datetime.now(UTC),
        governor=Recorder(size),
        stop=asyncio.Event(),
        limits=RunLimits(
            instance="test",
            containers_enabled=False,
            max_deletions=None,
            db_concurrency=concurrency,
            container_concurrency=8,
            lock_timeout_ms=5000,
            statement_timeout_ms=60000,
        ),
    )
    return BatchLoop(StageContext(ctx, uuid.uuid4(), "cli:test", Policy(7), now, checkpoint))
