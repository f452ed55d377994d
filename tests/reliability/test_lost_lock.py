"""Scenario 6, lost lock: the PostgreSQL session that holds the cleanup's advisory lock is
terminated while a run is mid-way. From that moment another replica may take the lock (shown
here), so the runner must notice before its next batch and stop: the batch already in flight ends
(whole), no further batch starts, and the run is recorded as failed with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import asyncpg

from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.constants import CLEANUP_LOCK_KEY
from botfleet.runtime.fleet import Fleet
from tests.support.figures import record_figure
from tests.support.store import Store, whole
from tests.support.wait import wait_until_async

BATCH = 20


async def test_a_lost_lock_stops_the_run_before_its_next_batch(
    pg_factory: Callable[..., Settings],
) -> None:
    settings = pg_factory(
        cleanup_batch_size=BATCH,
        container_cleanup_enabled=False,
        cleanup_lock_timeout_ms=60_000,
        cleanup_db_concurrency=1,  # one walk: "the 4th batch" is well defined
    )
    store = Store(settings)
    db = Store(settings, checker=True)
    first = await store.seed_bots(3 * BATCH, results_per_bot=2, deleted_ago=timedelta(days=30))
    later = await store.seed_bots(5 * BATCH, results_per_bot=2, deleted_ago=timedelta(days=20))
    blocker = await asyncpg.connect(settings.database_url)
    watcher = await asyncpg.connect(settings.database_url)
    try:
        # Live traffic holds the rows of the 4th batch: the run is mid-way, that batch in flight.
        await blocker.execute("BEGIN")
        await blocker.execute(
            "SELECT 1 FROM bots WHERE id = ANY($1::uuid[]) FOR UPDATE", [str(i) for i in later]
        )
        service = CleanupService(
            settings=settings, db=store.engine, fleet=Fleet.from_settings(settings)
        )
        run = asyncio.create_task(service.run(trigger="schedule", actor="schedule", dry_run=False))

        async def in_flight() -> bool:
            return bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM bots%'"
                )
            )

        await wait_until_async(
            in_flight, timeout=30, message="the 4th batch to wait on the held rows"
        )
        killed = await watcher.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'botfleet-cleanup-lock'"
        )
        assert killed == 1

        # Another replica can take the lock now: this is why the runner must stop.
        async def taken() -> bool:
            return bool(await watcher.fetchval("SELECT pg_try_advisory_lock($1)", CLEANUP_LOCK_KEY))

        await wait_until_async(taken, timeout=10, message="the lock to be free for another replica")
        await watcher.execute("SELECT pg_advisory_unlock($1)", CLEANUP_LOCK_KEY)
        await blocker.execute("ROLLBACK")
        report = await asyncio.wait_for(run, 60)
    finally:
        await blocker.close()
        await watcher.close()
    try:
        # Three batches before the loss, the one in flight, and not one more.
        assert report["resources"]["bots"]["deleted"] == 4 * BATCH, report["resources"]["bots"]
        assert await whole(db, first + later, 2) == 4 * BATCH
        assert report["status"] == "failed", report
        (error,) = report["errors"]
        assert (error["reason"], error["dependency"]) == ("interrupted", "database")
        assert "lock was lost" in error["message"]
        stored = (await db.runs())[-1]
        assert stored["status"] == "failed" and stored["report"]["errors"] == report["errors"]
        # The next run, with a lock of its own, finishes the job.
        again = await CleanupService(
            settings=settings, db=store.engine, fleet=Fleet.from_settings(settings)
        ).run(trigger="schedule", actor="schedule", dry_run=False)
        assert again["status"] == "succeeded", again
        assert await whole(db, first + later, 2) == 8 * BATCH
    finally:
        await db.close()
        await store.close()
    record_figure("lost_lock", batches_after_loss=0, in_flight_batch_whole=True)
