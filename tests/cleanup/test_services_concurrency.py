"""The services stage removes ``CLEANUP_CONTAINER_CONCURRENCY`` services at a time per manager;
these tests hold it to the same exactness as one at a time (safety rule 6), on a real swarm:
a bot restored between plan and apply keeps its service, with the reason, whether the restore
lands before the run's selection or while the other removals are in flight; the deletion cap
holds exactly with more removals allowed in flight than the cap; controls stay."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from botfleet.config import Settings
from botfleet.constants import LABEL_INSTANCE
from botfleet.runtime.swarm import SwarmEngine
from tests.cleanup.test_services_stage import engine, engine_ids, labels, later, service_for
from tests.support.store import Store, store
from tests.support.swarm import Swarm, docker

__all__ = ["engine", "store"]
pytestmark = pytest.mark.docker

CONCURRENCY = 8


def scaled_to_zero(swarm: Swarm, image: str, lbls: dict[str, str]) -> str:
    """A service with no replica (no task ever ran): what a purged bot's service looks like
    once swarm's task history is gone. Quick to make, so a test can make many."""
    # Named: swarm names an unnamed service at random and refuses a name a live service has.
    args = ["service", "create", "--detach", "-q", "--name", f"bf-test-{uuid.uuid4().hex}"]
    args += ["--replicas=0", "--network", "host"]
    for key, value in lbls.items():
        args += ["--label", f"{key}={value}"]
    return docker(swarm.manager.url, *args, image, "sleep", "600").stdout.strip()


def controls(swarm: Swarm, image: str) -> set[str]:
    """Another instance's orphan and a foreign service: never touched."""
    other = scaled_to_zero(swarm, image, labels("someone-else", uuid.uuid4()))
    foreign = scaled_to_zero(swarm, image, {"botfleet.test": "foreign"})
    return {other, foreign}


async def test_bots_restored_between_plan_and_apply_keep_their_services_under_concurrency(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    settings = settings_factory(
        bot_runtime="swarm",
        docker_hosts=swarm.manager.url,
        container_cleanup_grace_minutes=1,
        cleanup_container_concurrency=CONCURRENCY,
    )
    orphans = {
        scaled_to_zero(swarm, registry_image, labels(instance, uuid.uuid4())) for _ in "123456"
    }
    gone = datetime.now(UTC) - timedelta(days=1)
    before_bot, during_bot = await store.bot(deleted_at=gone), await store.bot(deleted_at=gone)
    before = scaled_to_zero(swarm, registry_image, labels(instance, before_bot))
    during = scaled_to_zero(swarm, registry_image, labels(instance, during_bot))
    kept_controls = controls(swarm, registry_image)
    cleanup = service_for(settings, store, engine, clock=later())
    dry = await cleanup.run(trigger="cli", actor="cli:t", dry_run=True)
    assert set(dry["resources"]["services"]["sample"]) == orphans | {before, during}

    # One restored before the apply (its selection sees it), one after the apply's selection,
    # while the other removals are about to be in flight (only the look right before its own
    # removal sees it).
    await store.restore(before_bot)
    await engine.start(before)

    async def restore_during() -> None:
        await store.restore(during_bot)
        await engine.start(during)

    real = await cleanup.run(
        trigger="cli",
        actor="cli:t",
        dry_run=False,
        plan_id=dry["plan_id"],
        pause_hook=restore_during,
    )
    services = real["resources"]["services"]
    assert real["status"] == "succeeded", real["errors"]
    assert services["deleted"] == len(orphans), services
    left = set(engine_ids(swarm))
    assert orphans.isdisjoint(left)
    assert {before, during} | kept_controls <= left
    skipped = {s["id"]: s["reason"] for s in services["skipped"]}
    assert set(skipped) == {before, during}
    assert skipped[before].startswith("changed since the plan:")
    assert skipped[during].startswith("changed since selection: version")
    audit = await store.audit(real["run_id"])
    assert {a["resource_id"] for a in audit if a["kind"] == "services"} == orphans
    swarm.remove_services("botfleet.test=foreign")
    swarm.remove_services(f"{LABEL_INSTANCE}=someone-else")


async def test_the_deletion_cap_holds_exactly_with_more_removals_in_flight_than_the_cap(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    orphans = {
        scaled_to_zero(swarm, registry_image, labels(instance, uuid.uuid4())) for _ in "1234"
    }
    kept_controls = controls(swarm, registry_image)

    def capped(cap: int) -> Settings:
        return settings_factory(
            bot_runtime="swarm",
            docker_hosts=swarm.manager.url,
            container_cleanup_grace_minutes=1,
            cleanup_container_concurrency=CONCURRENCY,
            cleanup_max_deletions=cap,
        )

    over = await service_for(capped(3), store, engine, clock=later()).run(
        trigger="cli", actor="cli:t", dry_run=False, only="services"
    )
    services = over["resources"]["services"]
    assert services["found"] == 4 and services["deleted"] == 0, services
    assert services.get("capped") is True and services["outcome"] == "refused"
    assert orphans | kept_controls <= set(engine_ids(swarm))

    exact = await service_for(capped(4), store, engine, clock=later()).run(
        trigger="cli", actor="cli:t", dry_run=False, only="services"
    )
    assert exact["resources"]["services"]["deleted"] == 4, exact["errors"]
    left = set(engine_ids(swarm))
    assert orphans.isdisjoint(left) and kept_controls <= left
    swarm.remove_services("botfleet.test=foreign")
    swarm.remove_services(f"{LABEL_INSTANCE}=someone-else")


async def test_a_bot_restored_while_its_group_is_looked_at_keeps_its_service(
    settings_factory: Callable[..., Settings],
    store: Store,
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
) -> None:
    """The service does not change when its bot's row is restored (the operator has not started
    it yet): only the bots' rows, read after the group's look, keep it."""
    settings = settings_factory(
        bot_runtime="swarm",
        docker_hosts=swarm.manager.url,
        container_cleanup_grace_minutes=1,
        cleanup_container_concurrency=4,
    )
    orphans = {
        scaled_to_zero(swarm, registry_image, labels(instance, uuid.uuid4())) for _ in "12345"
    }
    bot = await store.bot(deleted_at=datetime.now(UTC) - timedelta(days=1))
    owned = scaled_to_zero(swarm, registry_image, labels(instance, bot))
    cleanup = service_for(settings, store, engine, clock=later())

    async def restore_row() -> None:  # after the selection, before any removal
        await store.restore(bot)

    real = await cleanup.run(trigger="cli", actor="cli:t", dry_run=False, pause_hook=restore_row)
    services = real["resources"]["services"]
    assert real["status"] == "succeeded", real["errors"]
    assert services["deleted"] == len(orphans), services
    left = set(engine_ids(swarm))
    assert orphans.isdisjoint(left) and owned in left
    (skip,) = services["skipped"]
    assert skip["id"] == owned and skip["reason"] == f"bot {bot} is live", skip
