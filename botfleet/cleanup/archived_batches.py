"""Purge batches with an archive (CLEANUP_ARCHIVE_DIR): each batch's statement deletes and
returns what it deleted, its file is written and made durable (:mod:`botfleet.archive.writer`),
and only then does its transaction commit (design.md, safety rule 8: no archive, no delete).

A walk whose batches never touch the same rows (a heap walk's windows of blocks, a keyset of a
unique key) overlaps them on two connections of its own (PostgreSQL): while batch N's file is
written and fsynced and its transaction commits on one connection, batch N+1's statement runs on
the other, so the walk's database work does not wait for the disk (BENCHMARKS.md, Archive).
Batch N+1 writes its file only once batch N has committed, and rolls back if N did not: files
are written and batches commit in the walk's order, exactly as one batch at a time would, and a
crash at any point leaves at most one file whose batch has not committed (named by no audit
record: the next run removes it, :mod:`botfleet.archive.upkeep`). The loop counts a batch only
once it has committed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from botfleet.archive.format import ArchivedFile
from botfleet.archive.writer import RunArchive
from botfleet.cleanup.batch_steps import Batch, InFlight, Step
from botfleet.cleanup.context import StageContext


@dataclass(frozen=True)
class ArchivedBatches:
    """One walk's archived batches of stage ``kind``, each as :attr:`step` makes it."""

    stage: StageContext
    archive: RunArchive
    kind: str
    step: Step

    async def one(
        self, size: int, cursor: Any, name: str, connection: AsyncConnection | None
    ) -> Batch:
        """Delete, write the batch file durably, then commit. A failure before the commit rolls
        the batch back; its file, if written, is left for the audit to judge (a commit whose
        answer was lost may have happened: :mod:`botfleet.archive.upkeep` keeps a file exactly
        when the batch's audit record exists)."""
        if connection is not None:
            return await self.on(connection, size, cursor, name)
        run = self.stage.run
        async with run.sessions() as session, session.begin():
            await run.bound(session, async_commit=True)
            batch = await self.step(session, size, cursor, name)
            written = await self._write(name, batch)
        self._committed(written)
        return batch

    async def on(
        self,
        connection: AsyncConnection,
        size: int,
        cursor: Any,
        name: str,
        statement: asyncio.Future[Batch] | None = None,
        after: asyncio.Task[Batch] | None = None,
    ) -> Batch:
        """One batch in a transaction of ``connection`` (a stage's own, its limits set for the
        session); ``statement`` learns what the statement did before the file is written, which
        waits for the batch ``after`` to have committed (its failure rolls this one back)."""
        if connection.in_transaction():  # a read before the walk (HeapWalk.start)
            await connection.commit()
        async with connection.begin():
            batch = await self.step(connection, size, cursor, name)
            if statement is not None:
                statement.set_result(batch)
            if after is not None:
                await after
            written = await self._write(name, batch)
        self._committed(written)
        return batch

    async def _write(self, name: str, batch: Batch) -> ArchivedFile | None:
        if batch.archive is None or batch.archive.rows == 0:
            return None  # nothing deleted: no file, and no audit record names one
        return await self.archive.write_async(self.kind, name, batch.archive)

    def _committed(self, written: ArchivedFile | None) -> None:
        if written is not None:
            self.archive.committed(written)


@dataclass
class OverlappedBatches:
    """A walk's archived batches on two connections in turn: each batch's file and commit
    overlap the next batch's statement."""

    batches: ArchivedBatches
    connections: tuple[AsyncConnection, AsyncConnection]
    _last: list[asyncio.Task[Batch] | None] = field(default_factory=lambda: [None, None])
    _turn: int = 0

    async def start(self, size: int, cursor: Any, name: str) -> InFlight:
        """Runs the batch's statement; returns once it has run, its file and commit under way.
        The loop settles a batch before its connection's turn comes again; waited for here
        too, so that one connection never holds two batches."""
        turn = self._turn % 2
        self._turn += 1
        previous = self._last[turn]
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        started = time.perf_counter()
        statement: asyncio.Future[Batch] = asyncio.get_running_loop().create_future()
        after = self._last[1 - turn]  # the batch before, on the other connection
        task = asyncio.create_task(
            self.batches.on(self.connections[turn], size, cursor, name, statement, after)
        )
        self._last[turn] = task
        try:
            await asyncio.wait({statement, task}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: the batch goes as a batch of the sequential loop would
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the cancellation is what the caller hears
            raise
        if not statement.done():  # the batch ended before its statement answered: it failed
            statement.cancel()
            return InFlight.done(await task, size, started)
        return InFlight(statement.result(), size, started, task)
