"""Selection over ``results`` in slices of the ``bot_id`` key space (PostgreSQL).

Why: counting the results of expired bots, and finding orphaned results, reads every entry of
``ix_results_bot_id``. One statement over millions of rows is one long transaction (seconds at
the benchmark's scale); the same work cut into ranges of ``bot_id`` is many short ones, each a
merge of two index ranges read in key order — ``ix_results_bot_id`` against ``pk_bots`` (or the
partial ``ix_bots_deleted_id``), index-only, no hash table. Measured in ``bench/plan``.

Pure arithmetic here; the SQL lives in :mod:`botfleet.cleanup.plan`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

# Results per slice: about 60-100 ms of merging on the benchmark machine (BENCHMARKS.md), so every
# selection statement stays well under CLEANUP's 250 ms transaction target.
ROWS_PER_SLICE = 250_000
MAX_SLICES = 1024
# Bytes per results row assumed when the table was never analysed (a small row: errs towards
# more, shorter slices).
ROW_BYTES_GUESS = 80

# Settings for a slice: merge over index order, not a hash of a million bots (whose random
# probes cost more than the merge here); no JIT compile for a 100 ms query; no wait for a WAL
# flush at commit (a slice writes only the run's scratch table, which a crash discards anyway —
# a synchronous commit once waited 266 ms behind a checkpoint in bench/purge); and no parallel
# workers: slices already run CLEANUP_DB_CONCURRENCY at a time, and a slice's two workers made it
# no faster (39 ms against 35 ms alone) while taking three cores from live traffic instead of one
# (the plan 0.76-0.83 s -> 0.65-0.69 s in bench/purge).
SLICE_SETTINGS = {
    "enable_hashjoin": "off",
    "jit": "off",
    "synchronous_commit": "off",
    "max_parallel_workers_per_gather": "0",
}


@dataclass(frozen=True)
class KeyRange:
    """``low <= bot_id < high``; ``high`` None is the top of the key space."""

    low: uuid.UUID
    high: uuid.UUID | None


def slice_count(estimated_rows: int, per_slice: int | None = None) -> int:
    per = per_slice or ROWS_PER_SLICE
    return max(1, min(MAX_SLICES, math.ceil(max(0, estimated_rows) / per)))


def estimated_rows(reltuples: float | None, relation_bytes: int) -> int:
    """``pg_class.reltuples`` when known (-1 or 0 before the first ANALYZE), else a guess from
    the table's size."""
    guess = relation_bytes // ROW_BYTES_GUESS
    if reltuples is None or reltuples <= 0:
        return guess
    return max(int(reltuples), 0)


def key_ranges(count: int) -> list[KeyRange]:
    """``count`` equal slices of the uuid space, in key order (PostgreSQL compares uuids as
    unsigned 128-bit numbers, which is how they are cut here)."""
    count = max(1, count)
    step = (1 << 128) // count
    bounds = [uuid.UUID(int=i * step) for i in range(count)]
    return [KeyRange(low, bounds[i + 1] if i + 1 < count else None) for i, low in enumerate(bounds)]
