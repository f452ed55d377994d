"""Reading a stored audit trail one resource at a time (pure: cleanup/audit.py)."""

from __future__ import annotations

from typing import Any

import pytest

from botfleet.cleanup.audit import Slice, expand, page_slices

# Record 10: a batch of 3 bots; 11: a batch of results (one item); 12: 2 bots; 13: one bot.
SIZES = [(10, 3), (11, 1), (12, 2), (13, 1)]
ALL = [(10, 0), (10, 1), (10, 2), (11, 0), (12, 0), (12, 1), (13, 0)]


def flatten(slices: list[Slice]) -> list[tuple[int, int]]:
    return [(s.record_id, i) for s in slices for i in range(s.start, s.stop)]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 8])
def test_cursor_pages_cover_every_item_once_in_order(limit: int) -> None:
    served: list[tuple[int, int]] = []
    after = None
    while True:
        slices, more = page_slices(SIZES, limit, after=after)
        page = flatten(slices)
        assert len(page) == min(limit, len(ALL) - len(served))
        served += page
        if not more:
            break
        after = page[-1]
    assert served == ALL


@pytest.mark.parametrize("offset", range(9))
def test_an_offset_skips_that_many_items(offset: int) -> None:
    slices, more = page_slices(SIZES, 2, offset=offset)
    assert flatten(slices) == ALL[offset : offset + 2]
    assert more == (offset + 2 < len(ALL))


def test_a_cursor_past_a_record_that_is_gone_starts_at_the_next() -> None:
    assert flatten(page_slices(SIZES, 2, after=(11, 5))[0]) == [(12, 0), (12, 1)]
    assert page_slices(SIZES, 2, after=(99, 0)) == ([], False)


def record(kind: str, snapshot: Any, resource_id: str = "r") -> dict[str, Any]:
    return {
        "id": 5, "kind": kind, "resource_id": resource_id, "engine": "e", "reason": "why",
        "actor": "cli:x", "deleted_at": "2026-11-26T00:00:00+00:00", "snapshot": snapshot,
    }  # fmt: skip


def test_a_batch_of_bots_reads_as_one_item_per_bot_and_the_rest_as_stored() -> None:
    batch = {"count": 2, "bots": [{"id": "a", "name": "x"}, {"id": "b", "name": "y"}]}
    items = expand(record("bots", batch, "a..b"))
    assert [(i["resource_id"], i["snapshot"]) for i in items] == [
        ("a", {"name": "x"}),
        ("b", {"name": "y"}),
    ]
    assert all(i["reason"] == "why" and i["engine"] == "e" and i["id"] == 5 for i in items)
    old = record("bots", {"name": "x"}, "a")  # a per-bot record (before revision 0004)
    assert expand(old) == [old]
    results = record("orphaned_results", {"count": 2, "ids": [1, 2]}, "1..2")
    assert expand(results) == [results]
