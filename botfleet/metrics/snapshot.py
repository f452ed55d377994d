"""The snapshot of the database and engines behind the scrape-time gauges, kept fresh in the
background: a collector runs synchronously inside the scrape, so it only reads this snapshot;
:class:`SnapshotRefresher` re-measures it every ``SNAPSHOT_INTERVAL_SECONDS`` and right after each
run. Every replica exports the same database-derived values, so alerts aggregate them with
``max``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from botfleet import constants
from botfleet.backlog import Backlog, measure
from botfleet.config import Settings
from botfleet.metrics.runs import metric_name
from botfleet.runtime.fleet import Fleet
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_SECONDS = 30.0
SNAPSHOT_TIMEOUT_SECONDS = 20.0


class SnapshotRefresher:
    """An app Component that keeps :attr:`snapshot` fresh without ever blocking a scrape."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        settings: Settings,
        sessions: SessionFactory,
        fleet: Fleet,
        interval: float = SNAPSHOT_INTERVAL_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.snapshot: Backlog | None = None
        self.errors = Counter(
            metric_name(constants.M_SNAPSHOT_ERRORS, "_total"),
            "Failed attempts to measure the database/engine snapshot.",
            registry=registry,
        )
        self._settings = settings
        self._sessions = sessions
        self._fleet = fleet
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="metrics-snapshot")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """Ask for a fresh snapshot now (after a run); safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def refresh(self) -> Backlog | None:
        """Measure once; on failure keep the previous snapshot and count the error."""
        async with self._lock:
            try:
                async with asyncio.timeout(SNAPSHOT_TIMEOUT_SECONDS):
                    snap = await measure(
                        self._sessions, self._fleet, self._settings, now=self._clock()
                    )
            except Exception as exc:
                self.errors.inc()
                log.warning("metrics snapshot failed: %s", exc or type(exc).__name__)
                return None
            self.snapshot = snap
            return snap

    async def _run(self) -> None:
        while True:
            await self.refresh()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # arrives while it waits, and then stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
