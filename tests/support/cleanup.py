"""The cleanup under test, on the test's own store: a service built as the app builds it, a clock
the test moves by hand, and shorthands for a run report's figures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

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
    """A cleanup service on ``store``'s sessions and the engines of ``settings``."""
    return CleanupService(
        settings=settings,
        sessions=store.sessions,
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
