"""What one batch of a purge is: the step a stage hands the batch loop, what its statement did,
and a batch on its way to commit. Apart from the loop (:mod:`botfleet.cleanup.batches`), so that
the archived batches (:mod:`botfleet.cleanup.archived_batches`) and the loop share them without
importing each other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botfleet.archive.format import BatchBody
from botfleet.cleanup.sql import Runner


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
    freed: int = 0  # heap bytes of the rows it deleted, summed by its statement (PostgreSQL)


# One batch: (runner, size, cursor of the previous batch, its archive file's name or None)
# -> what it did.
Step = Callable[[Runner, int, Any, str | None], Awaitable[Batch]]


@dataclass
class InFlight:
    """A batch whose statement has run (``batch``); ``committed`` ends once it has committed —
    at once without an archive, after its file is durable with one — or raises if it did not."""

    batch: Batch
    size: int  # the rows it reserved
    started: float
    committed: asyncio.Future[Batch]

    @classmethod
    def done(cls, batch: Batch, size: int, started: float) -> InFlight:
        """A batch that has already committed."""
        future: asyncio.Future[Batch] = asyncio.get_running_loop().create_future()
        future.set_result(batch)
        return cls(batch, size, started, future)

    def ends_walk(self) -> bool:
        """Whether no batch follows it: a heap walk past its window's end, or a keyset batch
        that found fewer rows than it asked for."""
        if self.batch.done is not None:
            return self.batch.done
        return self.batch.selected < self.size
