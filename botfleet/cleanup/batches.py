"""The batch loop every database purge runs through: one short transaction per batch.

Each batch re-states its stage's condition in SQL (safety rule 3: a row that changed since
selection, a bot restored mid-run, is simply not deleted) and is counted in the stage's
:class:`Tally` only once it has committed. Batches walk a keyset or the heap — never an offset —
so each starts where the last one ended; the run's checkpoint comes before every batch, and the
batch governor sizes it and may pause between batches to let live traffic through.

With an archive (CLEANUP_ARCHIVE_DIR), every batch runs in a transaction of its own: its
statement deletes and returns what it deleted, the batch file is written and fsynced
(:mod:`botfleet.archive.writer`), and only then does the transaction commit (safety rule 8).
A batch's step is told the name of its file, so that its audit record names it: that record,
committed with the batch, is what proves the file committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Uuid, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from botfleet.archive.format import ArchivedFile, BatchBody
from botfleet.archive.writer import RunArchive
from botfleet.cleanup.context import StageContext
from botfleet.cleanup.sql import Runner, dedicated_connection
from botfleet.store.models import UTCDateTime


@dataclass
class Tally:
    """What a stage really removed so far: updated only after a batch commits."""

    deleted: int = 0
    related: int = 0  # bot_results deleted with their bots
    failed: int = 0
    batches: int = 0
    bytes_reclaimed: int = 0
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
class Batch:
    """What one batch did: rows it selected and deleted, related rows, where the next starts."""

    selected: int
    rows: int
    related: int = 0
    cursor: Any = None
    # None: the walk ends when a batch selects fewer rows than asked (keyset walks); a heap walk
    # ends when its window passes the end of the table, however many rows the last one held.
    done: bool | None = None
    archive: BatchBody | None = None  # what it deleted, when the run archives


# One batch: (runner, size, cursor of the previous batch, its archive file's name or None)
# -> what it did.
Step = Callable[[Runner, int, Any, str | None], Awaitable[Batch]]


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
    ) -> None:
        """Batches until the stage's rows are gone or ``limit`` (the plan's count) is reached."""
        governor = self.stage.run.governor
        archive = self.stage.archive
        walk = archive.walk(kind) if archive is not None else 0
        seq = 0
        cursor: Any = None
        while True:
            if tally.deleted + tally.in_flight >= limit:
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
            size = max(1, min(governor.next_size(), room))
            # Reserved until the batch commits: concurrent walks never delete more than planned.
            tally.in_flight += size
            started = time.perf_counter()
            seq += 1
            try:
                if archive is None:
                    batch = await self._batch(step, size, cursor, connection, autocommit)
                else:
                    name = archive.name(kind, walk, seq)
                    batch = await self._archived_batch(
                        archive, kind, name, step, size, cursor, connection
                    )
            except BaseException:
                tally.in_flight -= size
                tally.settle()
                raise
            governor.observe(time.perf_counter() - started, batch.rows + batch.related)
            tally.in_flight -= size
            tally.deleted += batch.rows
            tally.related += batch.related
            tally.batches += 1
            tally.settle()
            self.stage.report_progress(kind, tally.deleted, limit)
            if batch.done if batch.done is not None else batch.selected < size:
                return
            cursor = batch.cursor
            # A busy database (timing.BatchGovernor): let live traffic through between batches.
            if governor.pause_seconds > 0:
                await asyncio.sleep(governor.pause_seconds)

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

    async def _archived_batch(
        self,
        archive: RunArchive,
        kind: str,
        name: str,
        step: Step,
        size: int,
        cursor: Any,
        connection: AsyncConnection | None,
    ) -> Batch:
        """Delete, write the batch file durably, then commit. A failure before the commit rolls
        the batch back; its file, if written, is left for the audit to judge (a commit whose
        answer was lost may have happened: :mod:`botfleet.archive.upkeep` keeps a file exactly
        when the batch's audit record exists)."""
        written: ArchivedFile | None = None
        if connection is not None:
            if connection.in_transaction():  # a read before the walk (HeapWalk.start)
                await connection.commit()
            # The stage's own connection has its limits for the session already.
            async with connection.begin():
                batch = await step(connection, size, cursor, name)
                written = await self._write(archive, kind, name, batch)
        else:
            async with self.stage.run.sessions() as session, session.begin():
                await self.stage.run.bound(session, async_commit=True)
                batch = await step(session, size, cursor, name)
                written = await self._write(archive, kind, name, batch)
        if written is not None:
            archive.committed(written)
        return batch

    @staticmethod
    async def _write(
        archive: RunArchive, kind: str, name: str, batch: Batch
    ) -> ArchivedFile | None:
        if batch.archive is None or batch.archive.rows == 0:
            return None  # nothing deleted: no file, and no audit record names one
        return await archive.write_async(kind, name, batch.archive)

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
