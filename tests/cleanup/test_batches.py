"""The batch loop's bookkeeping: concurrent walks share the stage's limit exactly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from botfleet.cleanup.batches import Batch, Tally, together
from tests.support.cleanup import batch_loop

NOW = datetime.now(UTC)


async def test_a_walk_waits_for_a_batch_that_reserved_the_rest_then_takes_its_leftover() -> None:
    """Two walks, limit 4, batches of 3: A reserves 3 but its part holds 1 row; B, with 3 rows,
    finds the limit all reserved after its first batch. B must wait for A's batch and take the
    2 rows A did not use, not end with rows left (the index sweep's to find, slowly, or not at
    all). A fake step: the loop's bookkeeping is what is tested, not SQL."""
    loop = batch_loop(None, concurrency=2, size=3, now=NOW)
    b_went_first = asyncio.Event()
    left = {"a": 1, "b": 3}

    def part(name: str) -> Any:
        async def step(_conn: Any, size: int, _cursor: Any, _archive: str | None) -> Batch:
            if name == "a":
                await b_went_first.wait()
            taken = min(size, left[name])
            left[name] -= taken
            if name == "b":
                b_went_first.set()
            return Batch(taken, taken, done=left[name] == 0)

        return step

    tally = Tally()
    walks = [
        loop.run("bots", tally, 4, part(name), connection=object(), autocommit=True)  # type: ignore[arg-type]
        for name in ("a", "b")
    ]
    await asyncio.wait_for(together(tally, walks), timeout=10)
    assert left == {"a": 0, "b": 0}
    assert tally.deleted == 4 and tally.in_flight == 0 and tally.batches == 3
