"""Status reconciliation: the pure plan (tables), then the loop on the real engine, both stores."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from botfleet.bot_spec import NewBot
from botfleet.bots import BotService
from botfleet.config import Settings
from botfleet.constants import (
    PENDING_GRACE_SECONDS,
    STATUS_DELETED,
    STATUS_EXITED,
    STATUS_FAILED,
    STATUS_PENDING,
    STATUS_RUNNING,
    STATUS_STOPPED,
)
from botfleet.reconcile import EVENT_PASS_GAP_SECONDS, Reconciler
from botfleet.reconcile_plan import (
    BotView,
    StatusChange,
    StopContainer,
    container_status,
    plan_reconcile,
)
from botfleet.runtime.base import ContainerInfo
from botfleet.runtime.docker import DockerEngine
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot
from botfleet.store.session import create_engine, create_session_factory
from tests.support.wait import wait_until, wait_until_async
from tests.test_bots import insert_bot

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
BOT = uuid.UUID("00000000-0000-0000-0000-0000000000b1")


def info(
    state: str, exit_code: int | None = None, cid: str = "c1", engine: str = "e1"
) -> ContainerInfo:
    labels = {"botfleet.managed": "true", "botfleet.bot-id": str(BOT), "botfleet.instance": "i"}
    return ContainerInfo(
        id=cid, name="n", engine=engine, state=state, labels=labels, exit_code=exit_code
    )


def view(**overrides: Any) -> BotView:
    values: dict[str, Any] = {
        "id": BOT,
        "status": STATUS_RUNNING,
        "exit_code": None,
        "container_id": "c1",
        "engine": "e1",
        "deleted": False,
        "created_at": NOW - timedelta(hours=1),
    }
    values.update(overrides)
    return BotView(**values)


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (info("running"), (STATUS_RUNNING, None)),
        (info("restarting"), (STATUS_RUNNING, None)),
        (info("created"), (STATUS_STOPPED, None)),
        (info("paused"), (STATUS_STOPPED, None)),
        (info("exited", 0), (STATUS_EXITED, 0)),
        (info("exited", 143), (STATUS_STOPPED, 143)),
        (info("exited", 137), (STATUS_STOPPED, 137)),
        (info("exited", 3), (STATUS_FAILED, 3)),
        (info("exited", 127), (STATUS_FAILED, 127)),
        (info("dead", 1), (STATUS_FAILED, 1)),
        (None, (STATUS_FAILED, None)),
    ],
)
def test_container_status(
    container: ContainerInfo | None, expected: tuple[str, int | None]
) -> None:
    assert container_status(container) == expected


@pytest.mark.parametrize(
    ("bot", "containers", "changes", "stops"),
    [
        # In step: nothing to do.
        (view(), {"e1": [info("running")]}, [], []),
        # The container exited on its own, failed, or vanished.
        (view(), {"e1": [info("exited", 0)]}, [(STATUS_EXITED, 0)], []),
        (view(), {"e1": [info("exited", 2)]}, [(STATUS_FAILED, 2)], []),
        (view(), {"e1": []}, [(STATUS_FAILED, None)], []),
        # A stopped bot that was started again is running again.
        (
            view(status=STATUS_STOPPED, exit_code=143),
            {"e1": [info("running")]},
            [(STATUS_RUNNING, None)],
            [],
        ),
        # Its engine is unreachable (absent from the snapshot): leave it alone.
        (view(), {"e2": []}, [], []),
        (view(engine=None), {"e1": []}, [], []),
        # A create in flight (pending, no container yet) vs. one abandoned long ago.
        (view(status=STATUS_PENDING, container_id=None, created_at=NOW), {"e1": []}, [], []),
        (
            view(
                status=STATUS_PENDING,
                container_id=None,
                created_at=NOW - timedelta(seconds=PENDING_GRACE_SECONDS + 1),
            ),
            {"e1": []},
            [(STATUS_FAILED, None)],
            [],
        ),
        # A deleted bot: marked deleted, and whatever still runs under its label is stopped.
        (view(deleted=True, status=STATUS_DELETED), {"e1": [info("exited", 143)]}, [], []),
        (
            view(deleted=True, status=STATUS_DELETED),
            {"e1": [info("running")]},
            [],
            [StopContainer(BOT, "e1", "c1")],
        ),
        (
            view(deleted=True, status=STATUS_RUNNING),
            {"e1": [info("exited", 0)], "e2": [info("running", cid="c2", engine="e2")]},
            [(STATUS_DELETED, None)],
            [StopContainer(BOT, "e2", "c2")],
        ),
    ],
)
def test_plan_reconcile(
    bot: BotView,
    containers: dict[str, list[ContainerInfo]],
    changes: list[tuple[str, int | None]],
    stops: list[StopContainer],
) -> None:
    plan = plan_reconcile([bot], containers, now=NOW)
    expected = [StatusChange(bot.id, bot.status, s, c, deleted=bot.deleted) for s, c in changes]
    assert plan.changes == expected
    assert plan.stops == stops


# --- on the real engine ----------------------------------------------------------------------
@pytest.fixture
async def parts(settings: Settings) -> AsyncIterator[tuple[BotService, Reconciler]]:
    db = create_engine(settings)
    sessions = create_session_factory(db)
    fleet = Fleet.from_settings(settings)
    service = BotService(sessions=sessions, fleet=fleet, settings=settings)
    reconciler = Reconciler(sessions=sessions, fleet=fleet, settings=settings)
    yield service, reconciler
    await reconciler.stop()
    await fleet.close()
    await db.dispose()


def run(name: str, *command: str) -> NewBot:
    return NewBot(name=name, image="botfleet/sample-bot:latest", command=list(command))


@pytest.mark.docker
async def test_status_follows_the_containers(
    parts: tuple[BotService, Reconciler],
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    service, reconciler = parts
    done, _ = await service.create(run("done", "sh", "-c", "exit 0"), now=NOW)
    broken, _ = await service.create(run("broken", "sh", "-c", "exit 3"), now=NOW)
    halted, _ = await service.create(run("halted", "sleep", "600"), now=NOW)
    vanished, _ = await service.create(run("vanished", "sleep", "600"), now=NOW)
    runner, _ = await service.create(run("runner", "sleep", "600"), now=NOW)
    docker_client.containers.get(halted.container_id).stop(timeout=5)
    docker_client.containers.get(vanished.container_id).remove(force=True)
    for bot in (done, broken):
        container = docker_client.containers.get(bot.container_id)
        wait_until(
            lambda c=container: c.reload() or c.status == "exited",
            timeout=30,
            message=f"the {bot.name} bot's container to exit",
        )

    stats = await reconciler.reconcile_once(NOW)
    assert stats.engines_down == [] and stats.checked == 5
    got = {
        b.name: (b.status, b.exit_code)
        for b in [await service.get(x.id) for x in (done, broken, halted, vanished, runner)]
    }
    assert got == {
        "done": (STATUS_EXITED, 0),
        "broken": (STATUS_FAILED, 3),
        "halted": (STATUS_STOPPED, 143),
        "vanished": (STATUS_FAILED, None),
        "runner": (STATUS_RUNNING, None),
    }
    assert (await reconciler.reconcile_once(NOW)).updated == 0  # settled


@pytest.mark.docker
async def test_a_running_container_of_a_deleted_bot_is_stopped(
    parts: tuple[BotService, Reconciler],
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    service, reconciler = parts
    bot, _ = await service.create(run("zombie", "sleep", "600"), now=NOW)
    await service.delete(bot.id, now=NOW)
    container = docker_client.containers.get(bot.container_id)
    container.start()  # someone started it again behind botfleet's back
    stats = await reconciler.reconcile_once(NOW)
    assert stats.stopped == 1
    container.reload()
    assert container.status == "exited"
    assert (await service.get(bot.id)).status == STATUS_DELETED


@pytest.mark.docker
async def test_an_unreachable_engine_is_skipped(
    settings_factory: Callable[..., Settings],
    sample_image: str,
    cleanup_containers: None,
) -> None:
    missing = "unix:///tmp/bf-gone-engine.sock"
    settings = settings_factory(docker_hosts=f"unix:///var/run/docker.sock,{missing}")
    stranded_id, _ = await insert_bot(settings, "stranded", engine=missing)
    db = create_engine(settings)
    sessions = create_session_factory(db)
    fleet = Fleet([DockerEngine("unix:///var/run/docker.sock"), DockerEngine(missing)])
    service = BotService(sessions=sessions, fleet=fleet, settings=settings)
    reconciler = Reconciler(sessions=sessions, fleet=fleet, settings=settings)
    try:
        local, _ = await service.create(run("local", "sh", "-c", "exit 5"), now=NOW)
        assert local.engine == "unix:///var/run/docker.sock"

        async def failed() -> bool:
            if (await service.get(local.id)).status == STATUS_FAILED:
                return True
            stats = await reconciler.reconcile_once(NOW)
            assert stats.engines_down == [missing]
            return False

        await wait_until_async(failed, timeout=30, message="a pass to mark the local bot failed")
        assert (await service.get(stranded_id)).status == STATUS_RUNNING  # untouched
    finally:
        await fleet.close()
        await db.dispose()


async def test_an_abandoned_pending_bot_fails_after_the_grace(
    parts: tuple[BotService, Reconciler], settings: Settings
) -> None:
    service, reconciler = parts
    young, _ = await insert_bot(settings, "young", status=STATUS_PENDING, created_at=NOW)
    old, _ = await insert_bot(
        settings, "old", status=STATUS_PENDING, created_at=NOW - timedelta(hours=1)
    )
    await reconciler.reconcile_once(NOW)
    assert (await service.get(young)).status == STATUS_PENDING
    assert (await service.get(old)).status == STATUS_FAILED


@pytest.mark.docker
async def test_a_bot_restored_while_its_container_stops_runs_again(
    parts: tuple[BotService, Reconciler],
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reconciler saw the bot deleted and stops its container; the stop waits out the
    bot's grace, and a restore lands meanwhile (it finds the container still running and
    leaves it). The bot is live: its container must run, not stay stopped by the old pass."""
    service, reconciler = parts
    bot, _ = await service.create(run("restored-midway", "sleep", "600"), now=NOW)
    await service.delete(bot.id, now=NOW)
    container = docker_client.containers.get(bot.container_id)
    container.start()  # running again while deleted: the reconciler will stop it
    engine = reconciler._fleet.get(bot.engine)
    real_stop = engine.stop

    async def stop_during_a_restore(container_id: str, timeout: float = 10) -> None:
        await service.restore(bot.id, now=NOW)  # lands while the stop is under way
        await real_stop(container_id, timeout=timeout)

    monkeypatch.setattr(engine, "stop", stop_during_a_restore)
    await reconciler.reconcile_once(NOW)

    container.reload()
    assert (await service.get(bot.id)).deleted_at is None
    assert container.status == "running"


@pytest.mark.docker
async def test_a_bot_deleted_again_just_before_it_starts_ends_stopped(
    parts: tuple[BotService, Reconciler],
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restored while the reconciler stops it, so the pass starts it again; a delete lands just
    before that start, and its own stop comes first. The bot is deleted: its container must
    end stopped, not run on for a row the cleanup will purge."""
    service, reconciler = parts
    bot, _ = await service.create(run("deleted-again", "sleep", "600"), now=NOW)
    await service.delete(bot.id, now=NOW)
    container = docker_client.containers.get(bot.container_id)
    container.start()
    engine = reconciler._fleet.get(bot.engine)
    real_stop, real_start = engine.stop, engine.start
    restored: list[bool] = []

    async def stop_during_a_restore(container_id: str, timeout: float = 10) -> None:
        if not restored:
            restored.append(True)
            await service.restore(bot.id, now=NOW)
        await real_stop(container_id, timeout=timeout)

    async def start_after_a_delete(container_id: str) -> None:
        await service.delete(bot.id, now=NOW + timedelta(minutes=1))  # its stop comes first
        await real_start(container_id)

    monkeypatch.setattr(engine, "stop", stop_during_a_restore)
    monkeypatch.setattr(engine, "start", start_after_a_delete)
    await reconciler.reconcile_once(NOW)

    container.reload()
    assert restored and (await service.get(bot.id)).deleted_at is not None
    assert container.status == "exited"


@pytest.mark.docker
async def test_a_bot_purged_while_its_container_stops_stays_stopped(
    parts: tuple[BotService, Reconciler],
    settings: Settings,
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other way the row can change during the stop: the cleanup purged it. The
    workload is then an orphan for the cleanup to remove, never one to run again."""
    service, reconciler = parts
    bot, _ = await service.create(run("purged-midway", "sleep", "600"), now=NOW)
    await service.delete(bot.id, now=NOW)
    container = docker_client.containers.get(bot.container_id)
    container.start()
    engine = reconciler._fleet.get(bot.engine)
    real_stop = engine.stop

    async def stop_during_a_purge(container_id: str, timeout: float = 10) -> None:
        db = create_engine(settings)
        try:
            async with create_session_factory(db)() as session, session.begin():
                await session.execute(delete(Bot).where(Bot.id == bot.id))
        finally:
            await db.dispose()
        await real_stop(container_id, timeout=timeout)

    monkeypatch.setattr(engine, "stop", stop_during_a_purge)
    await reconciler.reconcile_once(NOW)

    container.reload()
    assert container.status == "exited"


@pytest.mark.docker
async def test_engine_events_update_status_without_waiting_for_the_interval(
    parts: tuple[BotService, Reconciler],
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    service, reconciler = parts  # RECONCILE_INTERVAL_SECONDS is 3600 in tests
    bot, _ = await service.create(run("evented", "sleep", "600"), now=NOW)
    await reconciler.start()
    await wait_until_async(lambda: reconciler.passes >= 1, timeout=30, message="the start-up pass")
    docker_client.containers.get(bot.container_id).kill()

    async def stopped() -> bool:
        return (await service.get(bot.id)).status == STATUS_STOPPED

    await wait_until_async(stopped, timeout=30, message="an event-driven pass")
    assert (await service.get(bot.id)).exit_code == 137


async def test_a_burst_of_events_is_a_few_passes_and_the_last_event_still_gets_one(
    settings_factory: Callable[..., Settings],
) -> None:
    """Events nudge the loop; a burst of them (a hundred bots created) must not become a pass
    per event, each listing every workload — yet an event at the end of it is never missed."""
    settings = settings_factory(reconcile_interval_seconds=3600)
    db = create_engine(settings)
    sessions = create_session_factory(db)
    reconciler = Reconciler(
        sessions=sessions, fleet=Fleet([]), settings=settings, watch_events=False
    )
    try:
        await reconciler.start()
        await wait_until_async(lambda: reconciler.passes >= 1, timeout=30, message="a first pass")
        burst = 4 * EVENT_PASS_GAP_SECONDS
        started = time.monotonic()
        while time.monotonic() - started < burst:
            reconciler.nudge()
            await asyncio.sleep(0.01)
        after_burst = reconciler.passes
        # At most one pass per gap, plus the one in flight when the burst began.
        assert after_burst <= 1 + burst / EVENT_PASS_GAP_SECONDS + 1, after_burst
        await wait_until_async(
            lambda: reconciler.passes > after_burst,
            timeout=10,
            message="a pass for the burst's last events",
        )
    finally:
        await reconciler.stop()
        await db.dispose()


async def test_a_pass_reads_only_the_bots_it_judges_a_page_at_a_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass never holds the whole fleet: the bots come a page at a time from one cursor, and
    the ones the plan would leave alone (live, no workload, not pending) are not read at all."""
    from botfleet import reconcile

    monkeypatch.setattr(reconcile, "PAGE_ROWS", 2)
    planned: list[int] = []
    real_plan = reconcile.plan_reconcile

    def counting_plan(bots: Any, containers: Any, *, now: datetime) -> Any:
        bots = list(bots)
        planned.append(len(bots))
        return real_plan(bots, containers, now=now)

    monkeypatch.setattr(reconcile, "plan_reconcile", counting_plan)
    old = NOW - timedelta(seconds=PENDING_GRACE_SECONDS + 60)
    abandoned = [
        (await insert_bot(settings, f"abandoned-{i}", status=STATUS_PENDING, created_at=old))[0]
        for i in range(5)
    ]
    idle = [(await insert_bot(settings, f"idle-{i}"))[0] for i in range(3)]
    db = create_engine(settings)
    sessions = create_session_factory(db)
    reconciler = Reconciler(
        sessions=sessions, fleet=Fleet([]), settings=settings, watch_events=False
    )
    service = BotService(sessions=sessions, fleet=Fleet([]), settings=settings)
    try:
        stats = await reconciler.reconcile_once(NOW)
        assert (stats.checked, stats.updated) == (5, 5)
        assert max(planned) <= 2 and sum(planned) == 5, planned
        assert {(await service.get(b)).status for b in abandoned} == {STATUS_FAILED}
        assert {(await service.get(b)).status for b in idle} == {STATUS_RUNNING}
    finally:
        await db.dispose()
