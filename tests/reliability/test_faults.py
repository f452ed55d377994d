"""Scenario 4, dead dependencies mid-run, on real PostgreSQL and real Docker Engines:

- the PostgreSQL session of a batch is terminated while the batch runs: that batch rolls back
  whole, the run ends ``partial`` with the database error recorded, the retry completes;
- PostgreSQL refuses connections while the container stage runs: no container is removed, since
  no live-bot check can be made (stale data is no licence); the run ends ``failed`` or
  ``partial`` (a stage with nothing to do counts as done), recorded;
- the Docker daemon is stopped in the middle of the container stage and started again: the run
  ends ``partial`` naming the engine, and a retry of the stale plan removes only what is still
  due — not the container whose bot was restored meanwhile, nor the live bot's container that
  the daemon's restart stopped.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import docker

from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.constants import KIND_CONTAINERS
from botfleet.runtime.fleet import Fleet
from botfleet.store.migrate import upgrade
from tests.conftest import PG_ADMIN_URL, make_settings
from tests.support.containers import Containers, EventLog, container_state, labels_for
from tests.support.figures import record_figure
from tests.support.store import CHECKER, Store, whole
from tests.support.wait import wait_until_async


def service_for(settings: Settings, store: Store, **kw: Any) -> CleanupService:
    return CleanupService(
        settings=settings, db=store.engine, fleet=Fleet.from_settings(settings), **kw
    )


# --- a batch's session killed --------------------------------------------------------------------
async def test_a_batch_whose_session_dies_rolls_back_whole(
    pg_factory: Callable[..., Settings],
    containers: Containers,
    instance: str,
    docker_client: Any,
) -> None:
    settings = pg_factory(
        cleanup_batch_size=20,
        container_cleanup_grace_minutes=0,
        cleanup_lock_timeout_ms=60_000,
        # One walk, so that "the 6th batch" is well defined (two walks: test_execute.py).
        cleanup_db_concurrency=1,
    )
    store = Store(settings)
    db = Store(settings, checker=True)
    first = await store.seed_bots(100, results_per_bot=2, deleted_ago=timedelta(days=30))
    later = await store.seed_bots(100, results_per_bot=2, deleted_ago=timedelta(days=20))
    live = await store.bot(results=2)
    kept = containers.make("exited", labels_for(instance, live))
    orphan = containers.make("created", labels_for(instance, uuid.uuid4()))
    blocker = await asyncpg.connect(settings.database_url)
    watcher = await asyncpg.connect(settings.database_url)  # pg_stat_activity: a fresh look each
    try:
        # Live traffic holds every row of the 6th batch: the run waits there, mid-way.
        await blocker.execute("BEGIN")
        await blocker.execute(
            "SELECT 1 FROM bots WHERE id = ANY($1::uuid[]) FOR UPDATE", [str(i) for i in later]
        )
        service = service_for(settings, store)
        run = asyncio.create_task(service.run(trigger="cli", actor="cli:fault", dry_run=False))

        async def batch_waiting() -> list[Any]:
            return list(
                await watcher.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM bots%'"
                )
            )

        (row,) = await wait_until_async(
            batch_waiting, timeout=30, message="the 6th batch to wait on the held rows"
        )
        killer = await asyncpg.connect(PG_ADMIN_URL)
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", row["pid"])
        finally:
            await killer.close()
        await blocker.execute("ROLLBACK")
        report = await asyncio.wait_for(run, 60)
    finally:
        await blocker.close()
        await watcher.close()
    try:
        assert report["status"] == "partial", report
        (error,) = [e for e in report["errors"] if e["stage"] == "bots"]
        assert error["dependency"] == "database"
        stored = (await db.runs())[-1]
        assert (stored["status"], stored["report"]["errors"]) == ("partial", report["errors"])
        assert await whole(db, first + later, 2) == 100  # five whole batches, the 6th undone
        assert report["resources"]["bots"]["deleted"] == 100
        # The other stages went on, on fresh data.
        assert container_state(docker_client, orphan) is None
        assert container_state(docker_client, kept) == "exited"
        retry = await service_for(settings, store).run(
            trigger="cli", actor="cli:retry", dry_run=False
        )
        assert retry["status"] == "succeeded", retry
        assert await whole(db, first + later, 2) == 200
        assert await db.bot_ids() == {str(live)} and await db.orphaned_results() == 0
        assert not await db.double_deletions()
    finally:
        await db.close()
        await store.close()
    record_figure("pg_session_killed_mid_batch", faults=1, inconsistencies=0, retry="succeeded")


# --- the database refuses connections during the container stage -------------------------------
async def set_connections(database: str, allowed: bool) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:  # every session of the app but the lock's (the run keeps its lock)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
                " AND application_name NOT IN ('botfleet-cleanup-lock', $2)",
                database,
                CHECKER,
            )
    finally:
        await admin.close()


async def test_no_container_is_removed_without_a_fresh_look_at_its_bot(
    fresh_pg_database: str,
    containers: Containers,
    instance: str,
    docker_client: Any,
) -> None:
    settings = make_settings(
        database_url=fresh_pg_database,
        botfleet_instance=instance,
        container_cleanup_grace_minutes=0,
    )
    await upgrade(settings)
    database = fresh_pg_database.rsplit("/", 1)[1]
    store = Store(settings)
    now = datetime.now(UTC)
    expired = await store.bot(deleted_at=now - timedelta(days=30), results=2)
    live = await store.bot(results=1)
    due = [
        containers.make("created", labels_for(instance, expired)),
        containers.make("created", labels_for(instance, uuid.uuid4())),
        containers.make("exited", labels_for(instance, uuid.uuid4())),
    ]
    kept = containers.make("exited", labels_for(instance, live))
    events = EventLog(containers.image).start()
    db = Store(settings, checker=True)
    reopened = threading.Event()

    async def database_goes_away() -> None:
        await set_connections(database, False)

    def progress(kind: str, done: int, total: int) -> None:
        # Called once the removals were tried (every 32, and at the end): the database comes back,
        # so that the run can record how it ended.
        if kind == KIND_CONTAINERS and not reopened.is_set():
            worker = threading.Thread(target=asyncio.run, args=(set_connections(database, True),))
            worker.start()
            worker.join()
            reopened.set()

    try:
        report = await service_for(settings, store).run(
            trigger="cli",
            actor="cli:fault",
            dry_run=False,
            pause_hook=database_goes_away,
            progress=progress,
        )
    finally:
        await set_connections(database, True)
    try:
        assert reopened.is_set()
        assert report["status"] in ("failed", "partial"), report["errors"]
        stage = report["resources"]["containers"]
        assert (stage["found"], stage["deleted"], stage["failed"]) == (3, 0, 3), stage
        assert any(e.get("dependency") == "database" for e in report["errors"])
        stored = (await db.runs())[-1]
        assert stored["status"] == report["status"]
        assert stored["report"]["errors"] == report["errors"]
        for cid in [*due, kept]:
            assert container_state(docker_client, cid) is not None
        await asyncio.to_thread(events.stop)
        seen = events.actions([*due, kept])
        assert not [a for _, a in seen if a in ("destroy", "die", "kill", "stop")], seen
        assert await db.audit_count("containers") == 0 and await db.audit_count("bots") == 0
        retry = await service_for(settings, store).run(
            trigger="cli", actor="cli:retry", dry_run=False
        )
        assert retry["status"] == "succeeded", retry
        assert all(container_state(docker_client, c) is None for c in due)
        assert container_state(docker_client, kept) == "exited"
        assert await db.bot_ids() == {str(live)}
    finally:
        events.close()
        await db.close()
        await store.close()
    record_figure(
        "database_refused_during_container_stage",
        faults=1,
        containers_removed_on_stale_data=0,
        retry="succeeded",
    )


# --- dockerd stopped mid-run and started again ---------------------------------------------------
async def test_dockerd_restarted_mid_run(
    pg_factory: Callable[..., Settings],
    engine_factory: Callable[[], Any],
    sample_image: str,
    instance: str,
) -> None:
    second = engine_factory()
    settings = pg_factory(
        docker_hosts=second.url,
        container_cleanup_grace_minutes=0,
        # One removal at a time: the daemon goes down right after the 2nd, before any other
        # starts (with a sliding window of 2 the other slot could finish the rest meanwhile).
        cleanup_container_concurrency=1,
    )
    store = Store(settings)
    db = Store(settings, checker=True)
    engine = docker.DockerClient(base_url=second.url, timeout=30)

    def make(labels: dict[str, str], *, run: bool = False) -> str:
        made = engine.containers.create(
            sample_image,
            command=["sleep", "600"] if run else ["true"],
            labels=labels,
            network_mode="none",
        )
        if run:
            made.start()
        return str(made.id)

    try:
        now = datetime.now(UTC)
        orphans = [make(labels_for(instance, uuid.uuid4())) for _ in range(6)]
        restored = await store.bot(deleted_at=now - timedelta(days=1))
        to_restore = make(labels_for(instance, restored))
        live = await store.bot()
        running = make(labels_for(instance, live), run=True)
        service = service_for(settings, store)
        plan = await service.run(trigger="cli", actor="cli:plan", dry_run=True)
        assert plan["resources"]["containers"]["found"] == 7, plan

        # The real run: dockerd goes down once two removals are done.
        removed: list[str] = []
        target = service.ctx.fleet.engines[second.url]
        real_remove = target.remove_verified

        async def remove_then_lose_the_daemon(container_id: str, check: Any) -> Any:
            outcome = await real_remove(container_id, check)
            if not isinstance(outcome, str):
                removed.append(container_id)
                if len(removed) == 2:
                    await asyncio.to_thread(second.stop)
            return outcome

        target.remove_verified = remove_then_lose_the_daemon  # type: ignore[method-assign]
        report = await service.run(trigger="cli", actor="cli:fault", dry_run=False)
        assert report["status"] == "partial", report
        assert report["resources"]["containers"]["deleted"] == 2
        assert [e["engine"] for e in report["errors"]] == [second.url]
        stored = (await db.runs())[-1]
        assert stored["status"] == "partial" and stored["report"]["errors"] == report["errors"]

        # While the daemon is down, an operator restores a bot whose container the plan holds.
        await store.restore(restored)
        await asyncio.to_thread(second.start)
        assert container_state(engine, running) == "exited"  # the daemon's restart stopped it

        # The retry applies the stale plan: everything is looked at again before it goes.
        retry = await service_for(settings, store).run(
            trigger="cli", actor="cli:retry", dry_run=False, plan_id=plan["plan_id"]
        )
        assert retry["status"] == "succeeded", retry
        stage = retry["resources"]["containers"]
        assert stage["deleted"] == 4, stage
        reasons = {s["id"]: s["reason"] for s in stage["skipped"]}
        assert reasons[to_restore] == f"changed since the plan: bot {restored} is live"
        assert all(reasons[c] == "changed since the plan: already gone" for c in removed)
        fresh = await service_for(settings, store).run(
            trigger="cli", actor="cli:after", dry_run=True
        )
        assert fresh["resources"]["containers"]["found"] == 0, fresh
        # The engine, read directly: the orphans are gone, the rest is there.
        assert all(container_state(engine, c) is None for c in orphans)
        assert container_state(engine, to_restore) == "created"
        assert container_state(engine, running) == "exited"
        assert sorted(await db.deleted_ids("containers")) == sorted(orphans)
        assert not await db.double_deletions()
    finally:
        engine.close()
        await db.close()
        await store.close()
    record_figure(
        "dockerd_restarted_mid_run",
        faults=1,
        containers_removed_on_stale_data=0,
        retry="succeeded",
    )
