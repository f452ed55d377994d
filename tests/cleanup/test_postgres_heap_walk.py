"""The physical-order walk's bookkeeping: windows, resumption, density, the sparse cut-off."""

from __future__ import annotations

import pytest

from botfleet.cleanup.postgres_heap_walk import MAX_WINDOW, MIN_WINDOW, SPARSE, HeapWalk, parse_tid


def test_too_sparse_or_empty_tables_are_left_to_the_index() -> None:
    assert HeapWalk.plan(blocks=0, expected=10) is None
    assert HeapWalk.plan(blocks=100, expected=0) is None
    assert HeapWalk.plan(blocks=1000, expected=int(1000 * SPARSE) - 1) is None
    walk = HeapWalk.plan(blocks=1000, expected=int(1000 * SPARSE))
    assert walk is not None and walk.end_block == 1000 and not walk.done


def test_a_window_spans_about_one_batch_of_blocks() -> None:
    walk = HeapWalk.plan(blocks=27_000, expected=400_000)  # ~14.8 eligible rows per block
    assert walk is not None
    after, until = walk.window(1000)
    assert after == "(0,0)" and parse_tid(until) == (68, 0)  # ceil(1000 / 14.8)


def test_windows_are_clamped_and_never_pass_the_end() -> None:
    dense = HeapWalk(end_block=10_000, density=10_000.0)
    assert parse_tid(dense.window(1000)[1]) == (MIN_WINDOW, 0)
    sparse = HeapWalk(end_block=100_000, density=0.01)
    assert parse_tid(sparse.window(1000)[1]) == (MAX_WINDOW, 0)
    short = HeapWalk(end_block=5, density=0.01)
    assert parse_tid(short.window(1000)[1]) == (5, 0)


def test_a_full_batch_resumes_after_its_last_row_a_short_one_after_its_window() -> None:
    walk = HeapWalk(end_block=1000, density=10.0)
    window = walk.window(100)  # blocks 0..9
    walk.advance(100, 100, "(6,17)", window)
    assert walk.after == (6, 17) and not walk.done
    assert walk.density == pytest.approx(100 / 7)
    window = walk.window(100)
    assert window[0] == "(6,17)"
    walk.advance(100, 40, "(12,3)", window)
    assert walk.after == parse_tid(window[1])  # the rest of that window held only 40


def test_an_empty_window_widens_the_next_and_the_walk_ends_at_the_last_block() -> None:
    walk = HeapWalk(end_block=100, density=1.0)
    window = walk.window(20)
    walk.advance(20, 0, None, window)
    assert walk.density == 0.5
    assert parse_tid(walk.window(20)[1])[0] - walk.after[0] == 40
    while not walk.done:
        window = walk.window(20)
        walk.advance(20, 0, None, window)
    assert walk.after == (100, 0)


def test_tids_are_parsed_strictly() -> None:
    assert parse_tid(" (3,4) ") == (3, 4)
    for bad in ("3,4", "(a,1)", "(1,2,3)", ""):
        with pytest.raises(ValueError):
            parse_tid(bad)


def test_a_walk_splits_into_adjacent_parts_that_cover_it_once() -> None:
    walk = HeapWalk(end_block=1001, density=3.0, after=(10, 4))
    parts = walk.split(3)
    assert [p.after for p in parts] == [(10, 4), (340, 0), (670, 0)]
    assert [p.end_block for p in parts] == [340, 670, 1001]
    assert all(p.density == 3.0 for p in parts)
    assert HeapWalk(end_block=2, density=1.0).split(8) == [
        HeapWalk(end_block=1, density=1.0),
        HeapWalk(end_block=2, density=1.0, after=(1, 0)),
    ]
    assert HeapWalk(end_block=5, density=1.0).split(1) == [HeapWalk(end_block=5, density=1.0)]
