"""How the audit trail is stored, and how it reads back one resource at a time.

A purge batch of bots is stored as one record per engine and reason, whose snapshot lists the
batch's bots, each with its own snapshot: ``{"count": n, "bots": [{"id": …, "name": …}, …]}``.
A row per bot made a purge measurably slower (BENCHMARKS.md, Purge). Readers do not see the
difference: :func:`expand` turns such a record back into one item per bot, with the bot's id as
``resource_id`` and its own snapshot, as older per-bot records read. A batch of results stays one
item listing its ids (results are many and carry nothing else worth reading).

No I/O here: :mod:`botfleet.cleanup.run_history` reads the rows and pages through the items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, case

from botfleet.constants import KIND_BOTS

BATCH_KEY = "bots"  # the list of a batch record's bots in its snapshot
# What a reader gets of each item, as of each stored record.
ITEM_FIELDS = ("id", "kind", "resource_id", "engine", "reason", "actor", "deleted_at", "snapshot")


def items_of(
    kind: SQLColumnExpression[str], resource_count: SQLColumnExpression[int]
) -> ColumnElement[int]:
    """In SQL: how many items a record reads back as, one per bot for a batch of bots, else
    one (a batch's ``resource_count`` is at least 1)."""
    return case((kind == KIND_BOTS, resource_count), else_=1)


def expand(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A stored record as the items a reader sees (see the module's docstring)."""
    item = {name: record[name] for name in ITEM_FIELDS}
    snapshot = record["snapshot"]
    if record["kind"] != KIND_BOTS or not isinstance(snapshot, Mapping):
        return [item]
    bots = snapshot.get(BATCH_KEY)
    if not isinstance(bots, list):
        return [item]  # a per-bot record (written before revision 0004)
    return [
        item
        | {"resource_id": str(bot["id"]), "snapshot": {k: v for k, v in bot.items() if k != "id"}}
        for bot in bots
    ]


@dataclass(frozen=True)
class Slice:
    """Items ``start``..``stop`` (exclusive) of record ``record_id``."""

    record_id: int
    start: int
    stop: int


def page_slices(
    sizes: Sequence[tuple[int, int]],
    limit: int,
    *,
    after: tuple[int, int] | None = None,
    offset: int = 0,
) -> tuple[list[Slice], bool]:
    """Which items make a page: ``sizes`` are (record id, items) in id order; the page starts
    after the item ``after`` (a cursor: record id, index), then skips ``offset`` items. Returns
    the slices holding up to ``limit`` items, and whether more follow. Every record holds at
    least one item, so ``limit + 2`` records from the cursor's own are always enough."""
    slices: list[Slice] = []
    wanted = limit + 1  # one more, to know whether a next page exists
    skip = offset
    for record_id, size in sizes:
        start = 0
        if after is not None:
            if record_id < after[0]:
                continue
            if record_id == after[0]:
                start = after[1] + 1
        passed = min(skip, max(0, size - start))  # the offset's items in this record
        start += passed
        skip -= passed
        if start >= size:
            continue
        stop = min(size, start + wanted)
        slices.append(Slice(record_id, start, stop))
        wanted -= stop - start
        if wanted == 0:
            break
    more = wanted == 0
    if more:  # drop the extra item
        last = slices[-1]
        slices[-1] = Slice(last.record_id, last.start, last.stop - 1)
        if slices[-1].start == slices[-1].stop:
            slices.pop()
    return slices, more
