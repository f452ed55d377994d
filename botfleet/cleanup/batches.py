"""The batch loop every database purge runs through: one short transaction per batch.

Each batch re-states its stage's condition in SQL (safety rule 3: a row that changed since
selection, a bot restored mid-run, is simply not deleted) and is counted in the stage's
:class:`Tally` only once it has committed. Batches walk a keyset or the heap — never an offset —
so each starts where the last one ended; the run's checkpoint comes before every batch, and the
batch governor sizes it and may pause between batches to let live traffic through.

With an archive (CLEANUP_ARCHIVE_DIR), every batch runs in a transaction of its own: its
statement deletes and returns what it deleted, the batch file is written and fsynced, and only
then does the transaction commit (safety rule 8; :mod:`botfleet.archive.writer`), and a purge's
batch holds ``batch_factor`` times as many rows (fewer transactions, files and fsyncs); a walk whose
batches never share rows overlaps one batch's file with the next one's statement
(:mod:`botfleet.cleanup.archived_batches`). A batch's step is told the name of its file, so that
its audit record names it: that record, committed with the batch, is what proves the file
committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Uuid, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from botfleet.cleanup.archived_batches import ArchivedBatches, OverlappedBatches
from botfleet.cleanup.batch_steps import Batch, InFlight, Step
from botfleet.cleanup.context import StageContext
from botfleet.cleanup.sql import dedicated_connection
from botfleet.constants import ARCHIVED_KINDS
from botfleet.store.models import UTCDateTime

__all__ = ["Batch", "BatchLoop", "Step", "Tally", "together"]
# How the loop starts its batch number ``seq`` of ``size`` rows after ``cursor``.
Start = Callable[[int, Any, int], Awaitable[InFlight]]


@dataclass
class Tally:
    """What a stage really removed so far: updated only after a batch commits."""

    deleted: int = 0
    related: int = 0  # bot_results deleted with their bots
    failed: int = 0
    batches: int = 0
    bytes_reclaimed: int = 0  # containers: their sizes; database stages: cleanup/storage.py
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (id, reason, engine)
    unlisted_skips: int = 0  # skipped items known only by count
    errors: list[dict[str, Any]] = field(default_factory=list)
    lag_seconds: list[float] = field(default_factory=list)
    in_flight: int = 0  # rows reserved by batches not yet committed (concurrent walks)
    aborted: bool = False  # one concurrent walk failed: the others end after their batch
    _settled: asyncio.Event | None = field(default=None, repr=False, compare=False)

    async def settled(self) -> None:
        """Until a batch in flight ends (committed, or failed and its reservation handed back)."""
        if self._settled is None:
            self._settled = asyncio.Event()
        await self._settled.wait()

    def settle(self) -> None:
        if self._settled is not None:
            self._settled.set()
            self._settled = None


@dataclass(frozen=True)
class BatchLoop:
    """Runs a stage's batches for one run (:class:`StageContext`)."""

    stage: StageContext

    async def run(
        self,
        kind: str,
        tally: Tally,
        limit: int,
        step: Step,
        *,
        connection: AsyncConnection | None = None,
        autocommit: bool = False,
        overlap: bool = False,
        scale: int = 1,
    ) -> None:
        """Batches until the stage's rows are gone or ``limit`` (the plan's count) is reached.
        ``overlap``: no two batches of this walk touch the same rows, so with an archive the next
        batch's statement may run on a second connection while this one's file is written.
        ``scale``: batches of ``scale`` times the governor's size, for rows much lighter than a
        bot with its results (:data:`botfleet.cleanup.quota_walk.QUOTA_BATCH_FACTOR`)."""
        archive = self.stage.archive
        if archive is None:
            plain = self._plain(step, connection, autocommit)
            await self._loop(tally, limit, kind, plain, scale)
            return
        # Larger batches for the purges it archives (idle_bots only soft-deletes live bots).
        if kind in ARCHIVED_KINDS:
            scale = max(scale, archive.archive.batch_factor)
        batches = ArchivedBatches(self.stage, archive, kind, step)
        walk = archive.walk(kind)
        if connection is not None and overlap:
            async with self.dedicated() as second:
                overlapped = OverlappedBatches(batches, (connection, second))

                async def start(size: int, cursor: Any, seq: int) -> InFlight:
                    return await overlapped.start(size, cursor, archive.name(kind, walk, seq))

                await self._loop(tally, limit, kind, start, scale)
            return

        async def one(size: int, cursor: Any, seq: int) -> InFlight:
            started = time.perf_counter()
            name = archive.name(kind, walk, seq)
            return InFlight.done(await batches.one(size, cursor, name, connection), size, started)

        await self._loop(tally, limit, kind, one, scale)

    async def _loop(
        self, tally: Tally, limit: int, kind: str, start: Start, scale: int = 1
    ) -> None:
        """``scale``: batches of ``scale`` times the governor's size (archived: fewer files)."""
        pending: deque[InFlight] = deque()  # statement run, commit not yet counted: oldest first
        try:
            await self._batches(tally, limit, kind, start, pending, scale)
        except BaseException:
            await self._drain(tally, limit, kind, pending, raising=False)
            raise
        await self._drain(tally, limit, kind, pending, raising=True)

    async def _batches(
        self,
        tally: Tally,
        limit: int,
        kind: str,
        start: Start,
        pending: deque[InFlight],
        scale: int,
    ) -> None:
        governor = self.stage.run.governor
        seq = 0
        cursor: Any = None
        while True:
            if tally.deleted + tally.in_flight >= limit:
                if pending:  # ours: settle it, then look again
                    await self._settle(tally, limit, kind, pending.popleft())
                    continue
                if tally.in_flight == 0:
                    return
                # The rest is reserved by a concurrent walk's batch, which may find fewer rows
                # in its part than it reserved: wait for it, then take what it left.
                await tally.settled()
                continue
            await self.stage.checkpoint()
            if tally.aborted:  # a concurrent walk of this stage failed: stop after our batch
                return
            room = limit - tally.deleted - tally.in_flight  # again: the checkpoint awaited
            if room <= 0:
                continue
            size = max(1, min(governor.next_size() * scale, room))
            # Reserved until the batch commits: concurrent walks never delete more than planned.
            tally.in_flight += size
            seq += 1
            try:
                batch = await start(size, cursor, seq)
            except BaseException:
                tally.in_flight -= size
                tally.settle()
                raise
            pending.append(batch)
            while len(pending) > 1 or pending[0].committed.done():
                await self._settle(tally, limit, kind, pending.popleft())
                if not pending:
                    break
            if batch.ends_walk():
                return
            cursor = batch.batch.cursor
            # A busy database (timing.BatchGovernor): let live traffic through between batches.
            if governor.pause_seconds > 0:
                await asyncio.sleep(governor.pause_seconds)

    async def _settle(self, tally: Tally, limit: int, kind: str, batch: InFlight) -> None:
        """Counts a batch once it has committed; a batch that did not hands its rows back."""
        try:
            done = await batch.committed
        except BaseException:
            tally.in_flight -= batch.size
            tally.settle()
            raise
        seconds = time.perf_counter() - batch.started
        self.stage.run.governor.observe(seconds, done.rows + done.related)
        tally.in_flight -= batch.size
        tally.deleted += done.rows
        tally.related += done.related
        tally.bytes_reclaimed += done.freed
        tally.batches += 1
        tally.settle()
        self.stage.report_progress(kind, tally.deleted, limit)

    async def _drain(
        self, tally: Tally, limit: int, kind: str, pending: deque[InFlight], *, raising: bool
    ) -> None:
        """The walk ends (done, stopped or failed): its batches under way commit, or not, and are
        counted either way; the first of their failures is raised if ``raising`` (a walk that
        failed already raises its own)."""
        failure: Exception | None = None
        while pending:
            try:
                await self._settle(tally, limit, kind, pending.popleft())
            except Exception as exc:
                failure = failure or exc
        if failure is not None and raising:
            raise failure

    def _plain(self, step: Step, connection: AsyncConnection | None, autocommit: bool) -> Start:
        """Batches without an archive: each one committed when its step returns."""

        async def start(size: int, cursor: Any, _seq: int) -> InFlight:
            started = time.perf_counter()
            batch = await self._batch(step, size, cursor, connection, autocommit)
            return InFlight.done(batch, size, started)

        return start

    async def _batch(
        self,
        step: Step,
        size: int,
        cursor: Any,
        connection: AsyncConnection | None,
        autocommit: bool,
    ) -> Batch:
        if connection is not None and autocommit:
            # One statement, one transaction, one round trip (limits set on the session).
            return await step(connection, size, cursor, None)
        if connection is not None:
            async with connection.begin():
                await self.stage.run.bound(connection, async_commit=True)
                return await step(connection, size, cursor, None)
        async with self.stage.run.sessions() as session, session.begin():
            await self.stage.run.bound(session, async_commit=True)
            return await step(session, size, cursor, None)

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[AsyncConnection]:
        """A connection of the stage's own (:func:`sql.dedicated_connection`): in autocommit,
        unless the run archives (each batch then commits its own transaction after its file)."""
        run = self.stage.run
        limits = run.limits
        async with dedicated_connection(
            run.db,
            limits.lock_timeout_ms,
            limits.statement_timeout_ms,
            autocommit=self.stage.archive is None,
        ) as conn:
            yield conn

    def audit_binds(self) -> list[Any]:
        """``:run_id``, ``:actor`` and ``:at`` of the audit records a batch writes."""
        return [
            bindparam("run_id", self.stage.run_id, type_=Uuid()),
            bindparam("actor", self.stage.actor),
            bindparam("at", self.stage.run.clock(), type_=UTCDateTime()),
        ]


async def together(tally: Tally, walks: Sequence[Awaitable[None]]) -> None:
    """Run a stage's walks side by side. The first failure makes the others stop after their
    current batch (never mid-statement: each batch commits or not, whole, and is counted), and
    is raised once all have ended."""
    if len(walks) == 1:
        await walks[0]
        return

    async def guarded(walk: Awaitable[None]) -> None:
        try:
            await walk
        except BaseException:
            tally.aborted = True
            raise

    outcomes = await asyncio.gather(*(guarded(w) for w in walks), return_exceptions=True)
    tally.aborted = False
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
