"""A walk through a table in physical order, one window of heap blocks per batch (PostgreSQL).

Why: batches chosen by an index (``deleted_at``) land on rows spread over the whole table, so
every batch reads and dirties a thousand different pages and probes the primary key for each
row; over a run each page is visited, dirtied (and written) once per batch that touches it. A walk
by ``ctid`` visits each page once, in order, and deletes by TID with no index probe. Measured in
``bench/purge`` (BENCHMARKS.md). It only pays when eligible rows are dense enough that a window of
a few hundred blocks holds a batch; below :data:`SPARSE` rows per block the index path is used.

Pure bookkeeping: the SQL lives in :mod:`botfleet.cleanup.purge_bots`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Eligible rows per heap block below which a walk reads too many blocks per row deleted.
SPARSE = 0.5
MIN_WINDOW = 8
MAX_WINDOW = 4096  # 32 MB of heap: bounds one batch's scan whatever the density
_TID = re.compile(r"^\((\d+),(\d+)\)$")


def parse_tid(value: str) -> tuple[int, int]:
    match = _TID.match(value.strip())
    if match is None:
        raise ValueError(f"not a tid: {value!r}")
    return int(match.group(1)), int(match.group(2))


def format_tid(tid: tuple[int, int]) -> str:
    return f"({tid[0]},{tid[1]})"


@dataclass
class HeapWalk:
    """Where the walk is (``after``: the last TID handled), where it ends, and how many
    blocks the next window should span to hold about one batch."""

    end_block: int
    density: float  # eligible rows per block, as last seen
    after: tuple[int, int] = (0, 0)  # offsets start at 1: "(0,0)" excludes nothing
    # The widest window: what one batch may scan when it finds nothing (its transaction's
    # length, for a table of small rows).
    max_window: int = MAX_WINDOW

    def split(self, parts: int) -> list[HeapWalk]:
        """The rest of this walk cut into ``parts`` walks of adjacent block ranges (at least a
        block each), to run side by side."""
        first = self.after[0]
        span = self.end_block - first
        parts = max(1, min(parts, span))
        bounds = [first + span * i // parts for i in range(parts + 1)]
        return [
            HeapWalk(
                end_block=bounds[i + 1],
                density=self.density,
                after=self.after if i == 0 else (bounds[i], 0),
                max_window=self.max_window,
            )
            for i in range(parts)
        ]

    @classmethod
    def plan(cls, blocks: int, expected: int, max_window: int = MAX_WINDOW) -> HeapWalk | None:
        """A walk over ``blocks`` blocks for ``expected`` rows, or None when too sparse."""
        if blocks <= 0 or expected <= 0 or expected / blocks < SPARSE:
            return None
        return cls(end_block=blocks, density=expected / blocks, max_window=max_window)

    @classmethod
    async def start(
        cls, conn: AsyncConnection, table: str, expected: int, max_window: int = MAX_WINDOW
    ) -> HeapWalk | None:
        """The table's size now: rows appended later are new (not eligible) or moved, and a
        moved row is the index sweep's to find."""
        blocks = (
            await conn.execute(
                text(
                    "SELECT pg_relation_size(CAST(:t AS regclass))"
                    " / current_setting('block_size')::bigint"
                ).bindparams(t=table)
            )
        ).scalar()
        return cls.plan(int(blocks or 0), expected, max_window)

    @property
    def done(self) -> bool:
        return self.after[0] >= self.end_block

    def window(self, size: int) -> tuple[str, str]:
        """``(after, until)`` TIDs of the next batch's scan: ``after < ctid < until``."""
        blocks = min(self.max_window, max(MIN_WINDOW, math.ceil(size / max(self.density, 1e-6))))
        until = min(self.after[0] + blocks, self.end_block)
        return format_tid(self.after), format_tid((until, 0))

    def advance(self, size: int, selected: int, last: str | None, window: tuple[str, str]) -> None:
        """After a batch: a full batch resumes after its last row, a short one after its window.
        The density seen in this batch sizes the next window."""
        start = parse_tid(window[0])[0]
        until = parse_tid(window[1])
        if selected >= size and last:
            self.after = parse_tid(last)
            covered = self.after[0] - start + 1
        else:
            self.after = until
            covered = until[0] - start
        if covered > 0:
            seen = selected / covered
            # An empty window widens the next one (density halves), never to zero.
            self.density = seen if selected else self.density / 2
