"""The scheduler under faults, with real processes, real PostgreSQL and real engines.

- two ``botfleet serve`` replicas on one database plus manual triggers: runs never overlap;
- a second ``dockerd`` stopped mid-life: partial runs, the breaker opens, then closes;
- PostgreSQL connections killed mid-run: a clean failure, whole batches, a retry on time;
- SIGTERM mid-run: the run ends ``partial``/``interrupted`` after whole batches, within seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import docker
import httpx
import pytest

from botfleet.cleanup.lock import lock_for
from botfleet.cleanup.service import CleanupService
from botfleet.cleanup.timing import BatchGovernor
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from botfleet.store.migrate import upgrade_sync
from botfleet.store.models import Bot, CleanupAudit, Result
from botfleet.store.session import create_engine
from tests.conftest import make_settings, started_app
from tests.reliability._serve import AUTH, Serve
from tests.support.store import Store
from tests.support.wait import wait_until_async

SECONDS = 1 / 3600  # CLEANUP_INTERVAL_HOURS per second


def real_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if not r["dry_run"] and r["status"] != "running"]


def assert_no_overlap(runs: list[dict[str, Any]]) -> None:
    ordered = sorted(runs, key=lambda r: r["started_at"])
    for before, after in itertools.pairwise(ordered):
        assert before["finished_at"] is not None
        assert before["finished_at"] <= after["started_at"], (
            f"runs overlap: {before['id']} {before['started_at']}..{before['finished_at']} "
            f"and {after['id']} from {after['started_at']}"
        )


async def whole_batches(store: Store, ids: list[uuid.UUID], results_per_bot: int) -> int:
    """Every seeded bot is either intact with all its results or gone with all of them, and
    each gone bot has exactly one audit record. Returns how many are gone."""
    left = await store.bots_left(ids)
    per_bot = await store.results_per_bot()
    for bot_id in ids:
        expected = results_per_bot if bot_id in left else 0
        assert per_bot.get(str(bot_id), 0) == expected, f"bot {bot_id} half-purged"
    gone = len(ids) - len(left)
    assert await store.audit_count("bots") == gone
    return gone


# --- two replicas --------------------------------------------------------------------------------
def test_two_replicas_never_overlap_and_contended_triggers_get_409(
    fresh_pg_database: str, tmp_path: Path, instance: str, docker_client: Any
) -> None:
    env = {
        "DATABASE_URL": fresh_pg_database,
        "BOTFLEET_INSTANCE": instance,
        "CLEANUP_ENABLED": "true",
        "CLEANUP_STARTUP_DELAY_SECONDS": "0",
        "CLEANUP_INTERVAL_HOURS": str(0.2 * SECONDS),
        "CLEANUP_RETRY_MINUTES": str(0.2 / 60),
        "CLEANUP_ADAPTIVE": "false",
        "CLEANUP_BATCH_SIZE": "50",
    }
    replicas = [Serve(tmp_path, **env), Serve(tmp_path, **env)]  # both migrate, under the lock
    store = Store(make_settings(database_url=fresh_pg_database))
    try:
        for replica in replicas:
            replica.ready()
        codes: list[int] = []
        seeded: list[uuid.UUID] = []

        async def load(seconds: float) -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    seeded.extend(await store.seed_bots(100, results_per_bot=3))
                    burst = [
                        client.post(f"{r.url}/admin/cleanup?dry_run=false", headers=AUTH)
                        for r in replicas
                        for _ in range(3)
                    ]
                    codes.extend(resp.status_code for resp in await asyncio.gather(*burst))

        async def scenario() -> list[dict[str, Any]]:
            await load(6)

            async def purged() -> bool:
                return not await store.bots_left(seeded)

            await wait_until_async(
                purged, timeout=30, message="the replicas to purge every seeded bot"
            )
            for replica in replicas:
                replica.terminate()
            for replica in replicas:
                replica.wait(20)
            runs = await store.runs()
            await whole_batches(store, seeded, 3)
            await store.close()
            return runs

        runs = asyncio.run(scenario())
    finally:
        for replica in replicas:
            replica.stop()
    real = real_runs(runs)
    print(
        f"real runs {len(real)} ({sum(r['trigger'] == 'schedule' for r in real)} scheduled), "
        f"manual 200: {codes.count(200)}, 409: {codes.count(409)}, bots purged {len(seeded)}"
    )
    assert set(codes) <= {200, 409}, codes
    assert codes.count(409) > 0 and codes.count(200) > 0
    assert_no_overlap(real)
    assert {r["trigger"] for r in real} == {"schedule", "manual"}
    assert len({r["owner"] for r in real}) == 2  # both replicas ran, never together
    assert not [r for r in runs if r["status"] in ("running", "failed", "abandoned")]
    logs = [replica.log() for replica in replicas]
    # A tick that met the other replica's run was skipped, never counted as a failure.
    assert any("holds the cleanup lock" in log for log in logs)
    assert not any("scheduled cleanup failed" in log or "Traceback" in log for log in logs)


# --- a second engine dies and comes back ---------------------------------------------------------
def orphan_on(client: Any, image: str, instance: str) -> Any:
    return client.containers.create(
        image,
        command=["true"],
        network_mode="none",
        labels={
            "botfleet.managed": "true",
            "botfleet.instance": instance,
            "botfleet.bot-id": str(uuid.uuid4()),
        },
    )


def gone(client: Any, container_id: str) -> bool:
    # sparse: the list's own answer. Without it the SDK inspects each listed container
    # afterwards, and raises NotFound when the scheduler removes it in between.
    return not client.containers.list(all=True, sparse=True, filters={"id": container_id})


async def test_a_dead_engine_opens_its_breaker_and_the_rest_is_cleaned(
    settings_factory: Callable[..., Settings],
    engine_factory: Callable[[], Any],
    docker_client: Any,
    sample_image: str,
    instance: str,
    cleanup_containers: None,
) -> None:
    second = engine_factory()
    local = "unix:///var/run/docker.sock"
    settings = settings_factory(
        docker_hosts=f"{local},{second.url}",
        cleanup_enabled=True,
        cleanup_startup_delay_seconds=0,
        cleanup_interval_hours=0.3 * SECONDS,
        cleanup_adaptive=False,
        cleanup_breaker_threshold=1,
        cleanup_breaker_cooldown_seconds=2,
        container_cleanup_grace_minutes=0,
    )
    store = Store(settings)
    second_client = docker.DockerClient(base_url=second.url, timeout=30)
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH)

    async def status() -> dict[str, Any]:
        return dict((await client.get("/admin/cleanup/status")).json())

    async def breaker(engine: str) -> str:
        return str((await status())["breakers"][f"engine:{engine}"]["state"])

    lock = lock_for(settings)
    try:
        # A healthy run with both engines first: the breakers have seen them work.
        await wait_until_async(store.runs, timeout=30, message="a first scheduled run")
        # Hold the cleanup lock while arranging the scene: the scheduler keeps ticking (and
        # skipping), so the engine dies under a live server, between two runs.
        await wait_until_async(lock.acquire, timeout=30, message="the cleanup lock")
        remote = [orphan_on(second_client, sample_image, instance) for _ in range(2)]
        second.stop()
        held_at = datetime.now(UTC)
        mine = [orphan_on(docker_client, sample_image, instance) for _ in range(2)]
        bots = await store.seed_bots(3, results_per_bot=2)
        await store.orphans(2)
        await lock.release()

        async def partial_run() -> dict[str, Any] | None:
            for run in await store.runs():
                if run["started_at"] > held_at and run["status"] != "running":
                    return run
            return None

        run = await wait_until_async(
            partial_run, timeout=30, message="the first run after the engine died"
        )
        report = run["report"]
        assert run["status"] == "partial", report
        resources = report["resources"]
        assert (resources["bots"]["deleted"], resources["bot_results"]["deleted"]) == (3, 6)
        assert resources["orphaned_results"]["deleted"] == 2
        assert resources["containers"]["deleted"] == 2
        assert [e["engine"] for e in report["errors"] if e.get("engine")] == [second.url]
        assert all(gone(docker_client, c.id) for c in mine)
        assert not await store.bots_left(bots)

        async def opened() -> bool:  # the run's row is written a moment before the breakers
            return await breaker(second.url) == "open"

        await wait_until_async(opened, timeout=10, message="the dead engine's breaker to open")
        assert await breaker(local) == "closed"
        snapshot = (await status())["breakers"][f"engine:{second.url}"]
        assert snapshot["last_error"] and snapshot["since"]

        # While open, runs skip the dead engine instead of waiting on it.
        async def skipping() -> bool:
            for later in await store.runs():
                if later["started_at"] <= run["started_at"] or not later["report"]:
                    continue
                skipped = later["report"]["resources"]["containers"].get("skipped", [])
                if any(item.get("reason") == "breaker open" for item in skipped):
                    return True
            return False

        await wait_until_async(skipping, timeout=30, message="a run that skips the open engine")

        second.start()
        await wait_until_async(
            lambda: asyncio.to_thread(lambda: all(gone(second_client, c.id) for c in remote)),
            timeout=30,
            message="the revived engine's orphans to go",
        )

        async def closed() -> bool:
            return await breaker(second.url) == "closed"

        await wait_until_async(closed, timeout=30, message="the breaker to close")
        assert (
            await store.count(
                CleanupAudit, CleanupAudit.engine == second.url, CleanupAudit.kind == "containers"
            )
            == 2
        )
    finally:
        await lock.release()
        await client.aclose()
        await ctx.__aexit__(None, None, None)
        second_client.close()
        await store.close()


# --- PostgreSQL connections killed mid-run -------------------------------------------------------
@pytest.fixture
def migrated_pg(fresh_pg_database: str) -> str:
    upgrade_sync(make_settings(database_url=fresh_pg_database))
    return fresh_pg_database


@pytest.fixture
async def blocker(migrated_pg: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(migrated_pg)
    yield conn
    await conn.close()


@pytest.fixture
async def observer(migrated_pg: str) -> AsyncIterator[asyncpg.Connection]:
    """Outside any transaction: pg_stat_activity is a fresh snapshot on every query."""
    conn = await asyncpg.connect(migrated_pg)
    yield conn
    await conn.close()


async def test_connections_killed_mid_run_fail_cleanly_and_retry_on_time(
    migrated_pg: str, blocker: asyncpg.Connection, observer: asyncpg.Connection, instance: str
) -> None:
    retry = 2.0
    settings = make_settings(
        database_url=migrated_pg,
        botfleet_instance=instance,
        cleanup_enabled=True,
        cleanup_startup_delay_seconds=0,
        cleanup_interval_hours=1,  # only a retry can bring the next run this soon
        cleanup_retry_minutes=retry / 60,
        cleanup_batch_size=20,
        cleanup_adaptive=False,
        container_cleanup_enabled=False,
        cleanup_breaker_threshold=5,
        cleanup_db_concurrency=1,  # one walk: "the 11th batch" is well defined
    )
    store = Store(settings)
    first = await store.seed_bots(200, results_per_bot=2, deleted_ago=timedelta(days=30))
    later = await store.seed_bots(200, results_per_bot=2, deleted_ago=timedelta(days=20))
    # Live traffic holds rows the 11th batch needs: the run waits there, mid-way.
    await blocker.execute("BEGIN")
    await blocker.execute(
        "SELECT 1 FROM bots WHERE id = ANY($1::uuid[]) FOR UPDATE", [str(i) for i in later]
    )
    app, ctx = await started_app(settings)
    scheduler = app.state.services.scheduler
    try:

        async def waiting_on_lock() -> bool:
            return bool(
                await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            )

        await wait_until_async(
            waiting_on_lock, timeout=30, message="the run to wait on the held rows"
        )
        killed = await observer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1",
            blocker.get_server_pid(),
        )
        assert killed >= 2  # the batch's connection and the lock's
        await blocker.execute("ROLLBACK")

        async def failed_run() -> dict[str, Any] | None:
            runs = [r for r in await store.runs() if r["status"] == "failed"]
            return runs[0] if runs else None

        failed = await wait_until_async(failed_run, timeout=30, message="the run to fail")

        async def planned() -> bool:  # the row is written a moment before the scheduler plans
            status = scheduler.status()
            return bool(status["consecutive_failures"] and status["next_run_reason"] == "retry")

        await wait_until_async(planned, timeout=10, message="the scheduler to plan the retry")
        status = scheduler.status()
        assert status["consecutive_failures"] == 1
        due = datetime.fromisoformat(status["next_run_at"])
        assert timedelta(seconds=retry) <= due - failed["finished_at"] < timedelta(seconds=3)
        # Nothing half-done: ten whole batches went, the blocked one rolled back.
        assert await whole_batches(store, first + later, 2) == 200
        assert any(e.get("dependency") == "database" for e in failed["report"]["errors"])

        async def retried() -> list[dict[str, Any]]:
            runs = [r for r in await store.runs() if r["started_at"] > failed["started_at"]]
            return [r for r in runs if r["status"] != "running"]

        (second,) = await wait_until_async(retried, timeout=30, message="the retry")
        assert second["status"] == "succeeded", second["report"]
        waited = second["started_at"] - failed["finished_at"]
        assert timedelta(seconds=retry) <= waited < timedelta(seconds=retry + 3)
        assert await whole_batches(store, first + later, 2) == 400

        async def reset() -> bool:  # the run's row is written a moment before the scheduler sees it
            return scheduler.status()["consecutive_failures"] == 0

        await wait_until_async(reset, timeout=10, message="the success to reset the failure count")
    finally:
        await ctx.__aexit__(None, None, None)
        await store.close()


# --- a busy database: smaller batches and pauses --------------------------------------------------
class RecordingGovernor:
    """The real governor, with a log of what it decided before each batch."""

    def __init__(self, inner: BatchGovernor) -> None:
        self.inner = inner
        self.sizes: list[int] = []
        self.pauses: list[float] = []

    @property
    def pause_seconds(self) -> float:
        return self.inner.pause_seconds

    def next_size(self) -> int:
        self.sizes.append(self.inner.next_size())
        return self.sizes[-1]

    def observe(self, seconds: float, rows: int) -> None:
        self.inner.observe(seconds, rows)
        self.pauses.append(self.inner.pause_seconds)


async def test_a_busy_database_shrinks_batches_and_pauses(
    migrated_pg: str, blocker: asyncpg.Connection, observer: asyncpg.Connection, instance: str
) -> None:
    settings = make_settings(
        database_url=migrated_pg,
        botfleet_instance=instance,
        container_cleanup_enabled=False,
        cleanup_db_concurrency=1,  # one walk: the batch sizes follow one another in order
    )
    store = Store(settings)
    await store.seed_bots(100, deleted_ago=timedelta(days=30))
    later = await store.seed_bots(200, deleted_ago=timedelta(days=20))
    governor = RecordingGovernor(BatchGovernor(max_size=100, slow_seconds=0.3))
    db = create_engine(settings)
    service = CleanupService(settings=settings, db=db, fleet=Fleet([]), governor=governor)
    # Live traffic holds rows of the second batch for a while: that batch is slow.
    await blocker.execute("BEGIN")
    await blocker.execute(
        "SELECT 1 FROM bots WHERE id = ANY($1::uuid[]) FOR UPDATE", [str(i) for i in later[:5]]
    )
    run = asyncio.create_task(service.run(trigger="cli", actor="test", dry_run=False))
    try:

        async def waited_long_enough() -> bool:
            return bool(
                await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND now() - query_start > interval '0.4 s'"
                )
            )

        await wait_until_async(
            waited_long_enough, timeout=30, message="the second batch to wait on the busy rows"
        )
        await blocker.execute("ROLLBACK")
        report = await asyncio.wait_for(run, 30)
    finally:
        if not run.done():
            run.cancel()
        await db.dispose()
    assert report["status"] == "succeeded", report
    assert report["resources"]["bots"]["deleted"] == 300
    assert governor.sizes[:3] == [100, 100, 50]  # the slow batch halved the next one
    assert governor.pauses[1] >= 0.3  # ... and paused before it
    assert governor.sizes[-1] == 100  # fast, full batches grew it back
    await store.close()


# --- SIGTERM mid-run -----------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/botfleet.db"
    else:
        url = request.getfixturevalue("fresh_pg_database")
    upgrade_sync(make_settings(database_url=url))
    yield url


class WriteBlock:
    """Live traffic holding the tables a batch writes: PostgreSQL ``LOCK TABLE … IN SHARE
    MODE`` (reads go on, deletes wait), SQLite ``BEGIN IMMEDIATE`` (the one writer's lock)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def hold(self) -> None:
        if self.url.startswith("sqlite"):
            self._sqlite = sqlite3.connect(self.url.split(":///", 1)[1], isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._pg = await asyncpg.connect(self.url)
            await self._pg.execute("BEGIN")
            await self._pg.execute("LOCK TABLE bots IN SHARE MODE")

    async def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.rollback()
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            await self._pg.close()
            self._pg = None


async def test_sigterm_mid_run_ends_the_run_partial_after_whole_batches(
    any_database: str, tmp_path: Path, instance: str
) -> None:
    batch = 100
    store = Store(make_settings(database_url=any_database))
    ids = await store.seed_bots(20_000, results_per_bot=1)
    block = WriteBlock(any_database)
    serve = Serve(
        tmp_path,
        DATABASE_URL=any_database,
        BOTFLEET_INSTANCE=instance,
        CLEANUP_ENABLED="true",
        CLEANUP_STARTUP_DELAY_SECONDS="0",
        CLEANUP_BATCH_SIZE=str(batch),
        CLEANUP_ADAPTIVE="false",
        CONTAINER_CLEANUP_ENABLED="false",
    )
    try:
        await wait_until_async(
            lambda: store.audit_count("bots"),
            timeout=60,
            message="the scheduled run to start deleting",
        )
        # Mid-run for sure: the next batch waits on busy tables while SIGTERM arrives; the
        # tables free up once the server has asked the run to stop after that batch.
        await block.hold()
        serve.terminate()
        signalled = time.monotonic()

        async def stop_requested() -> bool:
            return "asking the current run to finish its batch" in serve.log()

        await wait_until_async(
            stop_requested, timeout=10, message="the scheduler to ask the run to stop"
        )
        await block.release()
        await asyncio.to_thread(serve.wait, 30)
        took = time.monotonic() - signalled
    finally:
        await block.release()
        serve.stop()
    assert took < 10, f"serve took {took:.1f}s to exit after SIGTERM"
    (run,) = await store.runs()
    assert (run["trigger"], run["status"]) == ("schedule", "partial"), run["report"]
    assert [e.get("reason") for e in run["report"]["errors"]] == ["interrupted"]
    deleted = await whole_batches(store, ids, 1)
    assert 0 < deleted < len(ids)
    assert deleted % batch == 0
    assert run["report"]["resources"]["bots"]["deleted"] == deleted
    assert await store.count(Result) == await store.count(Bot) == len(ids) - deleted
    assert "cleanup scheduler stopped" in serve.log()
    print(f"SIGTERM to exit: {took:.2f}s; {deleted} of {len(ids)} bots purged in whole batches")
    await store.close()
