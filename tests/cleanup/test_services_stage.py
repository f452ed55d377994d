"""The services stage on a real swarm (safety rule 6): exactly the orphaned services go — this
instance's, no live owner, no task running, last task finished before the grace period, the
version the plan saw — and the controls stay: another instance's, a foreign one, a live bot's, an
orphan still running. Dry runs change nothing and their plans delete exactly what they listed; a
bot restored between plan and apply keeps its service, with the reason; a swarm whose managers
do not answer makes the stage fail alone. Plain engines' container stage never removes a swarm
task's container."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.runtime.base import ContainerSpec
from botfleet.runtime.fleet import Fleet
from botfleet.runtime.swarm import SwarmEngine
from tests.support.cleanup import Clock
from tests.support.store import Store, store
from tests.support.swarm import Swarm, docker
from tests.support.wait import wait_until_async

__all__ = ["store"]
pytestmark = pytest.mark.docker


def labels(instance: str, bot: uuid.UUID | str) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_BOT_ID: str(bot), LABEL_INSTANCE: instance}


@pytest.fixture
async def engine(swarm: Swarm, instance: str) -> AsyncIterator[SwarmEngine]:
    engine = SwarmEngine([swarm.manager.url])
    yield engine
    swarm.remove_services(f"{LABEL_INSTANCE}={instance}")
    swarm.remove_services("botfleet.test=foreign")
    await engine.close()


async def service(
    engine: SwarmEngine, image: str, lbls: dict[str, str], *, stopped: bool = True
) -> str:
    """A service as a bot's (one replica), stopped (scaled to zero, its task shut down)."""
    made = await engine.run(
        ContainerSpec(
            name=f"t-{uuid.uuid4().hex[:12]}",
            image=image,
            command=["sleep", "600"],
            env={},
            labels=lbls,
            network="none",
        )
    )

    def in_state(wanted: str) -> Callable[[], Any]:
        async def reached() -> bool:
            found = await engine.inspect(made.id)
            return found is not None and found.task_state == wanted

        return reached

    await wait_until_async(in_state("running"), timeout=60, message="the task to run")
    if stopped:
        await engine.stop(made.id)
        await wait_until_async(in_state("shutdown"), timeout=60, message="the task to stop")
    return made.id


def service_for(settings: Settings, store: Store, engine: SwarmEngine, **kw: Any) -> CleanupService:
    return CleanupService(settings=settings, db=store.engine, fleet=Fleet([engine]), **kw)


def later(minutes: float = 5) -> Clock:
    return Clock(datetime.now(UTC) + timedelta(minutes=minutes))


async def test_exactly_the_orphaned_services_go(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    settings = settings_factory(
        bot_runtime="swarm", docker_hosts=swarm.manager.url, container_cleanup_grace_minutes=1
    )
    purged_bot = uuid.uuid4()  # its row is gone
    orphan = await service(engine, registry_image, labels(instance, purged_bot))
    deleted_bot = await store.bot(deleted_at=datetime.now(UTC) - timedelta(days=1))
    of_deleted = await service(engine, registry_image, labels(instance, deleted_bot))
    live_bot = await store.bot()
    of_live = await service(engine, registry_image, labels(instance, live_bot))
    running_orphan = await service(
        engine, registry_image, labels(instance, uuid.uuid4()), stopped=False
    )
    other = await service(engine, registry_image, labels("someone-else", uuid.uuid4()))
    foreign = await service(engine, registry_image, {"botfleet.test": "foreign"})
    cleanup = service_for(settings, store, engine, clock=later())

    dry = await cleanup.run(trigger="cli", actor="cli:t", dry_run=True)
    services = dry["resources"]["services"]
    assert sorted(services["sample"]) == sorted([orphan, of_deleted])
    assert dry["resources"]["containers"]["outcome"] == "disabled"  # a swarm has services
    assert set(engine_ids(swarm)) >= {orphan, of_deleted, of_live, other, foreign}

    real = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    assert real["status"] == "succeeded", real["errors"]
    assert real["resources"]["services"]["deleted"] == 2
    left = set(engine_ids(swarm))
    assert {orphan, of_deleted}.isdisjoint(left)
    assert {of_live, running_orphan, other, foreign} <= left
    skipped = {s["id"]: s["reason"] for s in dry["resources"]["services"]["skipped"]}
    assert "running" in skipped[running_orphan]
    audit = await store.audit(real["run_id"])
    removed = {a["resource_id"]: a for a in audit if a["kind"] == "services"}
    assert set(removed) == {orphan, of_deleted}
    assert removed[orphan]["snapshot"]["version"] and removed[orphan]["reason"].startswith(
        "services: no bot row"
    )


def engine_ids(swarm: Swarm) -> list[str]:
    with swarm.manager.client() as client:
        return [str(s.id) for s in client.services.list()]


async def test_a_service_restored_between_plan_and_apply_is_skipped_with_its_reason(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    settings = settings_factory(
        bot_runtime="swarm", docker_hosts=swarm.manager.url, container_cleanup_grace_minutes=1
    )
    bot = await store.bot(deleted_at=datetime.now(UTC) - timedelta(days=1))
    kept = await service(engine, registry_image, labels(instance, bot))
    cleanup = service_for(settings, store, engine, clock=later())
    dry = await cleanup.run(trigger="cli", actor="cli:t", dry_run=True)
    assert dry["resources"]["services"]["sample"] == [kept]
    await store.restore(bot)  # the operator restores it; swarm brings it back
    await engine.start(kept)
    real = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    services = real["resources"]["services"]
    assert services["deleted"] == 0 and kept in engine_ids(swarm)
    (skip,) = services["skipped"]
    assert skip["id"] == kept and skip["reason"].startswith("changed since the plan:")


async def test_dry_runs_change_nothing_and_their_plans_delete_exactly_what_they_listed(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    settings = settings_factory(
        bot_runtime="swarm", docker_hosts=swarm.manager.url, container_cleanup_grace_minutes=0
    )
    orphans = {await service(engine, registry_image, labels(instance, uuid.uuid4())) for _ in "ab"}
    keep = await service(engine, registry_image, labels(instance, await store.bot()))
    cleanup = service_for(settings, store, engine, clock=later())
    before = sorted(engine_ids(swarm))
    dry = await cleanup.run(trigger="cli", actor="cli:t", dry_run=True)
    assert sorted(engine_ids(swarm)) == before  # changed nothing
    listed = set(dry["resources"]["services"]["sample"])
    assert listed == orphans
    real = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    assert set(before) - set(engine_ids(swarm)) == listed  # exactly what it listed
    assert keep in engine_ids(swarm)
    assert real["resources"]["services"]["deleted"] == len(listed)


async def test_a_swarm_that_does_not_answer_fails_its_stage_alone(
    settings_factory: Callable[..., Settings], store: Store
) -> None:
    settings = settings_factory(bot_runtime="swarm", docker_hosts="unix:///nonexistent/d.sock")
    await store.orphans(2)
    dead = SwarmEngine(["unix:///nonexistent/d.sock"], timeout=2)
    cleanup = service_for(settings, store, dead)
    try:
        report = await cleanup.run(trigger="schedule", actor="schedule", dry_run=False)
    finally:
        await dead.close()
    assert report["status"] == "partial"
    assert report["resources"]["orphaned_results"]["deleted"] == 2
    assert report["resources"]["services"]["outcome"] == "failed"
    (error,) = report["errors"]
    assert error["stage"] == "services" and error["engine"] == "swarm"


async def test_a_swarm_tasks_container_is_never_removed_by_the_container_stage(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    """A plain-engine run pointed at a swarm node sees the task containers of a service whose
    bot is gone, with botfleet's labels on them: they are the service's, never its own to go."""
    gone = await service(engine, registry_image, labels(instance, uuid.uuid4()))
    plain = settings_factory(
        docker_hosts=f"{swarm.manager.url},{swarm.worker.url}", container_cleanup_grace_minutes=0
    )
    fleet = Fleet.from_settings(plain)
    cleanup = CleanupService(settings=plain, db=store.engine, fleet=fleet, clock=later())
    try:
        report = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False, only="containers")
    finally:
        await fleet.close()
    assert report["resources"]["containers"]["found"] == 0, report["resources"]["containers"]
    task_containers = [
        docker(url, "ps", "-aq", "--filter", f"label=com.docker.swarm.service.id={gone}").stdout
        for url in (swarm.manager.url, swarm.worker.url)
    ]
    assert "".join(task_containers).split(), "the stopped task's container is kept"
    assert gone in engine_ids(swarm)


async def test_an_unreachable_swarm_opens_its_breaker_and_is_skipped(
    settings_factory: Callable[..., Settings], store: Store
) -> None:
    from botfleet.cleanup.scheduler import Scheduler

    settings = settings_factory(
        bot_runtime="swarm",
        docker_hosts="unix:///nonexistent/d.sock",
        cleanup_breaker_threshold=2,
        cleanup_enabled=True,
    )
    dead = SwarmEngine(["unix:///nonexistent/d.sock"], timeout=2)
    scheduler = Scheduler(
        settings=settings, service=service_for(settings, store, dead), engines=["swarm"]
    )
    try:
        for _ in range(2):
            tick = await scheduler.tick()
            assert tick.report is not None and tick.report["status"] == "partial"
        assert scheduler.breakers.get("engine:swarm").state == "open"
        skipped = await scheduler.tick()
    finally:
        await dead.close()
    assert skipped.report is not None
    assert skipped.report["resources"]["services"]["skipped"] == [
        {"id": "engine:swarm", "reason": "breaker open", "engine": "swarm"}
    ]


async def test_a_service_changed_since_the_plan_is_kept_even_with_no_owner(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    """Nothing but its version says the service changed (still no row, still nothing running):
    the plan's version no longer holds, so it stays."""
    settings = settings_factory(
        bot_runtime="swarm", docker_hosts=swarm.manager.url, container_cleanup_grace_minutes=1
    )
    changed = await service(engine, registry_image, labels(instance, uuid.uuid4()))
    cleanup = service_for(settings, store, engine, clock=later())
    dry = await cleanup.run(trigger="cli", actor="cli:t", dry_run=True)
    assert dry["resources"]["services"]["sample"] == [changed]
    docker(swarm.manager.url, "service", "update", "-d", "--label-add", "touched=yes", changed)
    real = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False, plan_id=dry["plan_id"])
    services = real["resources"]["services"]
    assert services["deleted"] == 0 and changed in engine_ids(swarm)
    (skip,) = services["skipped"]
    assert skip["id"] == changed and "version" in skip["reason"]


async def test_a_service_changed_between_selection_and_removal_is_kept(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    """The narrowest window: after the run selected it, before its removal, the service changes
    (its version moves on): the look right before removal keeps it."""
    settings = settings_factory(
        bot_runtime="swarm", docker_hosts=swarm.manager.url, container_cleanup_grace_minutes=1
    )
    changed = await service(engine, registry_image, labels(instance, uuid.uuid4()))
    cleanup = service_for(settings, store, engine, clock=later())

    async def touch() -> None:
        docker(swarm.manager.url, "service", "update", "-d", "--label-add", "touched=1", changed)

    real = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False, pause_hook=touch)
    services = real["resources"]["services"]
    assert services["found"] == 1 and services["deleted"] == 0, services
    assert changed in engine_ids(swarm)
    (skip,) = services["skipped"]
    assert skip["id"] == changed and "version" in skip["reason"]


async def test_a_swarm_listing_is_not_inspected_again_before_the_look_right_before_removal(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A swarm's listing holds every service's tasks: one inspect per service would double the
    engine's calls for nothing. The one look that stays is the one right before removal."""
    settings = settings_factory(
        bot_runtime="swarm", docker_hosts=swarm.manager.url, container_cleanup_grace_minutes=1
    )
    orphans = {await service(engine, registry_image, labels(instance, uuid.uuid4()))}
    orphans.add(await service(engine, registry_image, labels(instance, uuid.uuid4())))
    inspected: list[str] = []
    real_inspect = engine.inspect

    async def counted(service_id: str, *, size: bool = False) -> Any:
        inspected.append(service_id)
        return await real_inspect(service_id, size=size)

    monkeypatch.setattr(engine, "inspect", counted)
    cleanup = service_for(settings, store, engine, clock=later())
    report = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False)

    assert report["resources"]["services"]["deleted"] == 2, report["errors"]
    assert orphans.isdisjoint(engine_ids(swarm))
    assert inspected == []
