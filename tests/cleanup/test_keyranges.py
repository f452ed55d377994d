"""Slices of the bot-id key space: whole, in order, no gaps, no overlaps; and their count."""

from __future__ import annotations

import itertools
import uuid

import pytest

from botfleet.cleanup.keyranges import (
    MAX_SLICES,
    ROW_BYTES_GUESS,
    ROWS_PER_SLICE,
    estimated_rows,
    key_ranges,
    slice_count,
)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 1000])
def test_slices_cover_the_uuid_space_in_order_without_gaps(count: int) -> None:
    ranges = key_ranges(count)
    assert len(ranges) == count
    assert ranges[0].low == uuid.UUID(int=0) and ranges[-1].high is None
    for before, after in itertools.pairwise(ranges):
        assert before.high == after.low and before.low.int < after.low.int
    # Every uuid falls in exactly one slice.
    for probe in (uuid.UUID(int=0), uuid.uuid4(), uuid.UUID(int=(1 << 128) - 1)):
        inside = [
            r for r in ranges if r.low.int <= probe.int and (r.high is None or probe < r.high)
        ]
        assert len(inside) == 1


def test_the_number_of_slices_follows_the_table_size() -> None:
    assert slice_count(0) == 1
    assert slice_count(ROWS_PER_SLICE) == 1
    assert slice_count(ROWS_PER_SLICE + 1) == 2
    assert slice_count(3_050_000) == 13
    assert slice_count(10**12) == MAX_SLICES
    assert slice_count(10, per_slice=3) == 4


def test_an_unanalysed_table_is_estimated_from_its_size() -> None:
    assert estimated_rows(3_050_000.0, 1) == 3_050_000
    assert estimated_rows(-1.0, 800 * ROW_BYTES_GUESS) == 800
    assert estimated_rows(0.0, 0) == 0
    assert estimated_rows(None, 10 * ROW_BYTES_GUESS) == 10
