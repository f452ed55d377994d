"""One of several workers runs the background loops (``botfleet serve --workers N``).

Every worker serves the API and keeps what its own answers need (its metrics snapshot, its pool
for the ingest). The background loops that act on the fleet — the reconciler and the cleanup
scheduler — run in one worker only: the one holding an exclusive ``flock`` on a file the parent
names for its workers. The others try again every few seconds, so when that worker dies (and
uvicorn starts another) one of the living takes the loops over. Across replicas (hosts) each one
runs its own loops as before; the cleanup's advisory lock still makes one runner at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

log = logging.getLogger("botfleet.workers")

# Set by ``botfleet serve --workers N`` for its workers: the file whose lock elects the one
# that runs the background loops. Not a setting: the parent picks it, the workers read it.
LEASE_ENV = "BOTFLEET_BACKGROUND_LEASE"
RETRY_SECONDS = 5.0


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Lease:
    """An exclusive, non-blocking ``flock``: held until released or the process ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_take(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the lock


class LeaderOnly:
    """Starts ``components`` only in the worker holding the lease; stops them in reverse."""

    def __init__(
        self, lease: Lease, components: Sequence[Component], *, retry: float = RETRY_SECONDS
    ) -> None:
        self._lease = lease
        self._components = tuple(components)
        self._retry = retry
        self._started: list[Component] = []
        self._waiting: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return bool(self._started)

    async def start(self) -> None:
        if not await self._take():
            self._waiting = asyncio.create_task(self._wait_for_lease())

    async def _take(self) -> bool:
        if not self._lease.try_take():
            return False
        log.info("this worker (pid %d) runs the background loops", os.getpid())
        for component in self._components:
            await component.start()
            self._started.append(component)
        return True

    async def _wait_for_lease(self) -> None:
        while not await self._take():
            await asyncio.sleep(self._retry)

    async def stop(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiting
            self._waiting = None
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)
        self._lease.release()
