"""One cleanup at a time across replicas: advisory lock (PostgreSQL), flock (SQLite)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from botfleet.cleanup.lock import FileLock, PostgresLock, lock_for
from botfleet.config import Settings
from botfleet.errors import CleanupInProgress
from botfleet.store.migrate import upgrade
from botfleet.store.models import CleanupRun
from tests.conftest import make_settings
from tests.support.cleanup import Clock, days, make_service
from tests.support.store import Store, store
from tests.support.wait import wait_until_async

__all__ = ["store"]


async def add_run(store: Store, status: str = "running") -> uuid.UUID:
    run_id = uuid.uuid4()
    async with store.sessions() as session, session.begin():
        session.add(
            CleanupRun(
                id=run_id,
                trigger="schedule",
                actor="schedule",
                dry_run=False,
                status=status,
                started_at=datetime.now(UTC),
                owner="elsewhere:1",
            )
        )
    return run_id


async def run_status(store: Store, run_id: uuid.UUID) -> str:
    async with store.sessions() as session:
        row = await session.get(CleanupRun, run_id)
        assert row is not None
        return row.status


async def test_the_lock_excludes_a_second_holder(settings: Settings) -> None:
    first, second = lock_for(settings), lock_for(settings)
    assert isinstance(first, FileLock if settings.is_sqlite else PostgresLock)
    assert await first.acquire()
    try:
        assert not await second.acquire()
        assert await first.still_held()
    finally:
        await first.release()
    assert await second.acquire()
    await second.release()
    assert not await second.still_held()


async def test_a_contended_run_names_the_running_run(settings: Settings, store: Store) -> None:
    running = await add_run(store)
    held = lock_for(settings)
    assert await held.acquire()
    try:
        with pytest.raises(CleanupInProgress) as caught:
            await make_service(settings, store).run(trigger="cli", actor="cli:x", dry_run=True)
        assert caught.value.run_id == str(running)
    finally:
        await held.release()
    # Once the holder is gone, the next run takes the lock and retires the dead run's row.
    report = await make_service(settings, store).run(trigger="cli", actor="cli:x", dry_run=True)
    assert report["status"] == "succeeded"
    assert await run_status(store, running) == "abandoned"


async def test_two_runs_at_once_one_waits_for_nobody(settings: Settings, store: Store) -> None:
    """Two services (two replicas) start together: one runs, the other gets 409's error."""
    gate = asyncio.Event()
    first = make_service(settings, store)
    second = make_service(settings, store)

    async def pause() -> None:
        await gate.wait()

    running = asyncio.create_task(
        first.run(trigger="cli", actor="cli:a", dry_run=True, pause_hook=pause)
    )
    await wait_until_async(
        lambda: first.current_run_id is not None, timeout=30, message="the first run to start"
    )
    with pytest.raises(CleanupInProgress) as caught:
        await second.run(trigger="cli", actor="cli:b", dry_run=True)
    assert caught.value.run_id == first.current_run_id
    gate.set()
    assert (await running)["status"] == "succeeded"


async def test_mark_abandoned_only_when_the_lock_is_free(settings: Settings, store: Store) -> None:
    stale = await add_run(store)
    service = make_service(settings, store)
    held = lock_for(settings)
    assert await held.acquire()
    try:
        assert await service.mark_abandoned() == 0  # another replica may really be running
        assert await run_status(store, stale) == "running"
    finally:
        await held.release()
    assert await service.mark_abandoned() == 1
    assert await run_status(store, stale) == "abandoned"


async def test_a_lost_postgres_lock_stops_the_run(fresh_pg_database: str, instance: str) -> None:
    """The lock's session dies (failover, a DBA's pg_terminate_backend): another replica may
    take over, so this run must stop before its next batch and delete nothing more."""
    settings = make_settings(
        database_url=fresh_pg_database, botfleet_instance=instance, cleanup_batch_size=1
    )
    await upgrade(settings)
    store = Store(settings)
    database_url = fresh_pg_database
    now = datetime.now(UTC)
    bots = {await store.bot(deleted_at=now - days(10 + i), results=1) for i in range(3)}
    service = make_service(settings, store, Clock(now))

    async def kill_the_lock_session() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'botfleet-cleanup-lock'"
                " AND datname = current_database()"
            )
            assert killed == 1
        finally:
            await conn.close()

    report = await service.run(
        trigger="cli", actor="cli:x", dry_run=False, pause_hook=kill_the_lock_session
    )
    assert report["status"] == "failed"
    assert report["resources"]["bots"]["deleted"] == 0
    (error,) = [e for e in report["errors"] if e["stage"] == "bots"]
    assert error["dependency"] == "database" and "lock was lost" in error["message"]
    assert await store.bot_ids() == {str(b) for b in bots}
    await store.close()
