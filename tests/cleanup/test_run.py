"""A run: batches as the governor sizes them, caps, stop requests, failure isolation between
stages and engines, result retention, the run's scratch tables."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg

from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.runtime.docker import DockerEngine
from botfleet.runtime.fleet import Fleet
from botfleet.store.migrate import upgrade
from botfleet.store.models import Result
from tests.conftest import make_settings, postgres_only
from tests.support.cleanup import Clock, Recorder, days, deleted, found, make_service
from tests.support.containers import Containers, containers, labels_for
from tests.support.store import Store, store

__all__ = ["containers", "store"]
NOW = datetime.now(UTC)


async def test_batches_follow_the_governor(settings: Settings, store: Store) -> None:
    for i in range(5):
        await store.bot(deleted_at=NOW - days(8 + i), results=3)
    await store.orphans(3)
    governor = Recorder(2)
    service = make_service(settings, store, Clock(NOW), governor=governor)
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert deleted(report) == {"bots": 5, "bot_results": 15, "orphaned_results": 3, "containers": 0}
    # Bots: 2+2+1 (each with its 3 results), then orphans 2+1: one transaction per batch.
    assert governor.seen == [8, 8, 4, 2, 1]


async def test_the_default_batch_size_is_the_setting(settings_factory: Any, store: Store) -> None:
    for i in range(3):
        await store.bot(deleted_at=NOW - days(8 + i))
    settings = settings_factory(cleanup_batch_size=2, container_cleanup_enabled=False)
    service = make_service(settings, store, Clock(NOW))
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False, only="bots")
    assert report["resources"]["bots"]["deleted"] == 3
    assert len(await store.audit(report["run_id"])) == 3  # one item per bot
    # Stored one record per batch: 2 + 1.
    assert [r["resource_count"] for r in await store.audit_records(report["run_id"])] == [2, 1]


async def test_a_stage_over_the_cap_deletes_nothing(settings_factory: Any, store: Store) -> None:
    bots = {await store.bot(deleted_at=NOW - days(8 + i)) for i in range(3)}
    await store.orphans(2)
    settings = settings_factory(cleanup_max_deletions=2, container_cleanup_enabled=False)
    service = make_service(settings, store, Clock(NOW))
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert report["status"] == "partial"
    res = report["resources"]
    assert (res["bots"]["found"], res["bots"]["deleted"]) == (3, 0)
    assert res["bots"]["outcome"] == "refused" and res["bots"]["capped"] is True
    assert res["orphaned_results"]["deleted"] == 2  # the other stage still ran
    (error,) = report["errors"]
    assert error["stage"] == "bots" and "CLEANUP_MAX_DELETIONS=2" in error["message"]
    assert await store.bot_ids() == {str(b) for b in bots}
    # The dry run says the same thing, the same way.
    dry = await service.run(trigger="cli", actor="cli:x", dry_run=True)
    assert dry["resources"]["bots"]["outcome"] == "refused" and dry["status"] == "partial"


async def test_a_stop_request_ends_the_run_after_the_current_batch(
    settings: Settings, store: Store
) -> None:
    for i in range(4):
        await store.bot(deleted_at=NOW - days(8 + i), results=1)
    await store.orphans(2)
    service: CleanupService

    class StopAfterFirst(Recorder):
        def observe(self, seconds: float, rows: int) -> None:
            super().observe(seconds, rows)
            if len(self.seen) == 1:
                service.request_stop()

    service = make_service(settings, store, Clock(NOW), governor=StopAfterFirst(1))
    report = await service.run(trigger="schedule", actor="schedule", dry_run=False)
    assert report["status"] == "partial"
    res = report["resources"]
    assert (res["bots"]["deleted"], res["bot_results"]["deleted"]) == (1, 1)
    assert res["bots"]["outcome"] == "interrupted"
    assert res["orphaned_results"]["outcome"] == "interrupted"
    assert res["orphaned_results"]["deleted"] == 0
    assert [(e["stage"], e["reason"]) for e in report["errors"]] == [("bots", "interrupted")]
    # The lock is free again, and the stop was consumed by the run it ended.
    again = await service.run(trigger="schedule", actor="schedule", dry_run=False)
    assert again["status"] == "succeeded", again["errors"]
    assert again["resources"]["bots"]["deleted"] == 3


async def test_open_breakers_and_dead_engines_leave_the_rest_running(
    settings_factory: Any, store: Store, containers: Containers, instance: str
) -> None:
    orphan = containers.make("exited", labels_for(instance))
    await store.orphans(1)
    settings = settings_factory(container_cleanup_grace_minutes=0)
    dead = DockerEngine("unix:///nonexistent/docker.sock", timeout=2)
    fleet = Fleet([DockerEngine(""), dead])
    service = CleanupService(settings=settings, db=store.engine, fleet=fleet)
    try:
        report = await service.run(trigger="schedule", actor="schedule", dry_run=False)
        assert report["status"] == "partial"
        res = report["resources"]
        assert res["orphaned_results"]["deleted"] == 1
        assert res["containers"]["deleted"] == 1 and containers.state(orphan) is None
        assert res["containers"]["outcome"] == "partial"
        (error,) = report["errors"]
        assert error["stage"] == "containers" and error["engine"] == dead.name

        skipped = await service.run(
            trigger="schedule", actor="schedule", dry_run=True, skip_engines={dead.name}
        )
        assert skipped["status"] == "partial" and skipped["errors"] == []
        assert skipped["resources"]["containers"]["skipped"] == [
            {"id": f"engine:{dead.name}", "reason": "breaker open", "engine": dead.name}
        ]
    finally:
        await fleet.close()


async def test_result_retention_for_live_bots(settings_factory: Any, store: Store) -> None:
    settings = settings_factory(result_retention_days=14, cleanup_batch_size=2)
    live = await store.bot()
    held = await store.bot(labels={"botfleet.hold": "true"})
    async with store.sessions() as session, session.begin():
        for bot_id in (live, held):
            session.add_all(Result(bot_id=bot_id, created_at=NOW - days(d)) for d in (1, 15, 20))
    service = make_service(settings, store, Clock(NOW))
    dry = await service.run(trigger="cli", actor="cli:x", dry_run=True)
    assert found(dry)["results"] == 2
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert report["resources"]["results"]["deleted"] == 2
    assert await store.results_of(live) == 1 and await store.results_of(held) == 3
    audit = await store.audit(report["run_id"])
    assert [a["kind"] for a in audit] == ["results"]
    # Without a retention for results the stage is off, and says so.
    plain = make_service(settings_factory(), store, Clock(NOW))
    assert "results" not in (await plain.run(trigger="cli", actor="x", dry_run=True))["resources"]


async def test_a_failing_stage_does_not_stop_the_others(fresh_pg_database: str) -> None:
    """A bot row locked by someone else past CLEANUP_LOCK_TIMEOUT_MS fails the bots stage (a
    database error the breaker counts); the orphan stage still runs; the run is partial."""
    settings = make_settings(
        database_url=fresh_pg_database,
        cleanup_lock_timeout_ms=100,
        container_cleanup_enabled=False,
    )
    await upgrade(settings)
    store = Store(settings)
    try:
        locked = await store.bot(deleted_at=NOW - days(10), results=1)
        await store.orphans(2)
        service = make_service(settings, store, Clock(NOW))
        conn = await asyncpg.connect(fresh_pg_database)
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM bots WHERE id = $1 FOR UPDATE", locked)
                report = await asyncio.wait_for(
                    service.run(trigger="schedule", actor="schedule", dry_run=False), 30
                )
        finally:
            await conn.close()
        assert report["status"] == "partial"
        res = report["resources"]
        assert res["bots"]["outcome"] == "failed" and res["bots"]["deleted"] == 0
        assert res["orphaned_results"]["deleted"] == 2
        (error,) = report["errors"]
        assert error["stage"] == "bots" and error["dependency"] == "database"
        assert "lock timeout" in error["message"]
        assert await store.bot_ids() == {str(locked)}
    finally:
        await store.close()


@postgres_only
async def test_orphan_tables_last_one_run_and_a_crashed_runs_is_dropped_by_the_next(
    settings: Settings, store: Store
) -> None:
    from sqlalchemy import text

    from botfleet.cleanup.database_selection import ORPHAN_TABLE_PREFIX

    leftover = ORPHAN_TABLE_PREFIX + "0" * 32
    async with store.sessions() as session, session.begin():
        await session.execute(text(f'CREATE UNLOGGED TABLE "{leftover}" (id bigint)'))
    await store.orphans(4)
    service = make_service(settings, store, Clock(NOW))
    report = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    assert deleted(report)["orphaned_results"] == 4
    async with store.sessions() as session:
        tables = await session.execute(
            text("SELECT tablename FROM pg_tables WHERE tablename LIKE :p"),
            {"p": ORPHAN_TABLE_PREFIX + "%"},
        )
        assert list(tables) == []
