"""The sender: delivers the outbox at least once, one replica at a time, never in a run's way.

Every replica runs it; the one that holds the sender's lock (a PostgreSQL advisory lock, or a
file lock beside an SQLite database) delivers, the others only measure the outbox for the
metrics and try the lock again later. A pass takes the due entries in id order, one task per
receiver (so a slow or dead receiver holds back only its own events, in their order): a 2xx
marks an entry delivered; anything else counts an attempt and schedules the next one after a
capped exponential backoff with jitter (:func:`backoff`), and an entry older than ``max_age`` is
given up (expired). After a receiver fails, its other entries wait for the next pass.

The retry schedule lives in the outbox rows (``next_attempt_at``), not in the process: it
survives restarts and moves with the lock to another replica. That is why this is a loop of its
own over the table rather than an in-process retry decorator (tenacity) around each request.

The request timeout is longer than a slow receiver's answer (NOTIFY_TIMEOUT_SECONDS below): an
answer that comes late but comes is still a delivery, never a retry, so a receiver that
answered 2xx does not get the event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import select, update

from botfleet.notify.events import CONTENT_TYPE
from botfleet.notify.outbox import DELIVERED, EXPIRED, PENDING, Notifier, depth
from botfleet.notify.signing import headers
from botfleet.store.models import NotifyOutbox
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30.0
BATCH = 100


class Lock(Protocol):
    async def acquire(self) -> bool: ...

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


class Observer(Protocol):
    """The metrics (botfleet/metrics/notify.py), passed in."""

    def delivered(self, outcome: str) -> None: ...

    def measured(self, pending: int, oldest_age: float) -> None: ...


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: base * 2^(attempts - 1), at most ``cap``, with up to
    20 % jitter downwards so that receivers coming back are not hit all at once."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return float(delay * (1 - 0.2 * (rng or random.Random()).random()))


class Sender:
    """An app component (started and stopped with the app)."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        notifier: Notifier,
        lock: Lock,
        observer: Observer,
        clock: Callable[[], datetime],
        interval: float = 2.0,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        max_age: timedelta = timedelta(days=1),
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        lock_retry: float = 15.0,
    ) -> None:
        """``lock_retry``: seconds between a non-sending replica's tries for the lock (each try
        is a new connection on PostgreSQL)."""
        self._sessions = sessions
        self._notifier = notifier
        self._lock = lock
        self._observer = observer
        self._clock = clock
        self._interval = interval
        self._base = base_delay
        self._cap = max_delay
        self._max_age = max_age
        self._timeout = timeout
        self._transport = transport
        self._holding = False
        self._lock_retry = lock_retry
        self._next_try = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()

    @property
    def holding(self) -> bool:
        return self._holding

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="notify-sender")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._holding:
            self._holding = False
            with contextlib.suppress(Exception):
                await self._lock.release()

    def wake(self) -> None:
        """Deliver now (an event was just written)."""
        self._wake.set()

    async def _loop(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as http:
            while True:
                try:
                    await self.pass_once(http)
                except Exception as exc:  # the database is down, say: log and carry on
                    log.warning("notification sender: %s", exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._wake.wait()
                self._wake.clear()

    async def pass_once(self, http: httpx.AsyncClient) -> int:
        """One pass: hold (or take) the lock, deliver what is due, measure. Returns how many
        entries were delivered."""
        if self._holding and not await self._lock.still_held():
            self._holding = False
        if not self._holding and time.monotonic() >= self._next_try:
            self._holding = await self._lock.acquire()
            self._next_try = time.monotonic() + self._lock_retry
        delivered = 0
        if self._holding:
            due = await self._due()
            by_url: dict[str, list[Any]] = {}
            for row in due:
                by_url.setdefault(row.url, []).append(row)
            counts = await asyncio.gather(*(self._deliver(http, rows) for rows in by_url.values()))
            delivered = sum(counts)
        async with self._sessions() as session:
            pending, oldest = await depth(session, self._clock())
        self._observer.measured(pending, oldest)
        return delivered

    async def _due(self) -> Sequence[Any]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(
                    NotifyOutbox.id,
                    NotifyOutbox.event_id,
                    NotifyOutbox.url,
                    NotifyOutbox.body,
                    NotifyOutbox.attempts,
                    NotifyOutbox.created_at,
                )
                .where(NotifyOutbox.state == PENDING, NotifyOutbox.next_attempt_at <= self._clock())
                .order_by(NotifyOutbox.id)
                .limit(BATCH)
            )
            return rows.all()

    async def _deliver(self, http: httpx.AsyncClient, rows: Sequence[Any]) -> int:
        """One receiver's due entries, in order, until one fails."""
        done = 0
        for row in rows:
            error = await self._post(http, row)
            now = self._clock()
            if error is None:
                await self._finish(row.id, DELIVERED, now, None)
                self._observer.delivered(DELIVERED)
                done += 1
                continue
            attempts = row.attempts + 1
            if now - row.created_at >= self._max_age:
                await self._finish(row.id, EXPIRED, now, error)
                self._observer.delivered(EXPIRED)
                log.warning("notification %s to %s expired: %s", row.event_id, row.url, error)
            else:
                delay = backoff(attempts, base=self._base, cap=self._cap, rng=self._rng)
                await self._retry(row.id, attempts, now + timedelta(seconds=delay), error)
                self._observer.delivered("failed")
            break  # the receiver is failing: its later entries wait for the next pass
        return done

    async def _post(self, http: httpx.AsyncClient, row: Any) -> str | None:
        body = row.body.encode()
        stamp = int(self._clock().timestamp())
        try:
            answer = await http.post(
                row.url,
                content=body,
                headers={
                    "content-type": CONTENT_TYPE,
                    **headers(self._notifier.key, row.event_id, stamp, body),
                },
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"

    async def _finish(self, row_id: int, state: str, now: datetime, error: str | None) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(NotifyOutbox)
                .where(NotifyOutbox.id == row_id)
                .values(
                    state=state,
                    finished_at=now,
                    attempts=NotifyOutbox.attempts + 1,
                    last_error=error,
                )
            )

    async def _retry(self, row_id: int, attempts: int, at: datetime, error: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(NotifyOutbox)
                .where(NotifyOutbox.id == row_id)
                .values(attempts=attempts, next_attempt_at=at, last_error=error)
            )
