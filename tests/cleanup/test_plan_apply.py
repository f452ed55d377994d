"""``plan_id``: applying a dry run's plan deletes only what it planned, nothing newer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botfleet.errors import InvalidInput, PlanNotFound
from tests.support.cleanup import Clock, days, found, make_service
from tests.support.containers import Containers, containers, docker_time, labels_for
from tests.support.store import Store, store

__all__ = ["containers", "store"]


async def test_apply_deletes_only_the_planned_items(
    settings_factory: Any, store: Store, containers: Containers, instance: str
) -> None:
    planned_container = containers.make("exited", labels_for(instance))
    vanishing_container = containers.make("exited", labels_for(instance))
    finished = docker_time(containers.inspect(vanishing_container)["State"]["FinishedAt"])
    clock = Clock(finished + timedelta(minutes=5))
    now = clock.now
    expired = await store.bot(deleted_at=now - days(10), results=2)
    live = await store.bot(results=1)
    planned_orphans = set(await store.orphans(2))
    settings = settings_factory(container_cleanup_grace_minutes=1, cleanup_batch_size=1)
    service = make_service(settings, store, clock)

    plan = await service.run(trigger="manual", actor="api:x@y", dry_run=True)
    assert found(plan) == {"bots": 1, "bot_results": 2, "orphaned_results": 2, "containers": 2}

    # After the plan: new orphans of every kind, and a planned container goes by itself.
    new_orphans = set(await store.orphans(3))
    recently_deleted = await store.bot(deleted_at=now + timedelta(minutes=1), results=1)
    new_container = containers.make("exited", labels_for(instance))
    containers.client.api.remove_container(vanishing_container)
    clock.now = now + timedelta(hours=1)

    applied = await service.run(
        trigger="manual", actor="api:x@y", dry_run=False, plan_id=plan["plan_id"]
    )
    assert applied["plan_id"] == plan["plan_id"] and applied["run_id"] != plan["run_id"]
    res = applied["resources"]
    assert (res["bots"]["deleted"], res["bot_results"]["deleted"]) == (1, 2)
    assert res["orphaned_results"]["deleted"] == 2
    assert res["containers"]["deleted"] == 1
    assert res["containers"]["planned"] == 2 and res["containers"]["changed_since_plan"] == 1
    assert {
        "id": vanishing_container,
        "reason": "changed since the plan: already gone",
        "engine": "local",
    } in res["containers"]["skipped"]
    assert applied["status"] == "succeeded", applied["errors"]

    assert await store.bot_ids() == {str(live), str(recently_deleted)}
    remaining = await store.result_ids()
    assert new_orphans <= remaining and not (planned_orphans & remaining)
    assert await store.results_of(expired) == 0
    assert containers.state(planned_container) is None
    assert containers.state(new_container) == "exited"

    # The same plan again finds nothing of what it planned: it is all gone.
    again = await service.run(
        trigger="manual", actor="api:x@y", dry_run=False, plan_id=plan["plan_id"]
    )
    assert sum(found(again).values()) == 0


async def test_a_plan_that_no_longer_holds_deletes_nothing_of_that_kind(
    settings: Any, store: Store
) -> None:
    """A bot row removed behind the cleanup's back makes old results orphans the plan never
    saw: that stage refuses (it would delete more than planned), the others go ahead."""
    now = datetime.now(UTC)
    await store.orphans(1)
    expired = await store.bot(deleted_at=now - days(10), results=1)
    doomed_elsewhere = await store.bot(results=2)
    service = make_service(settings, store, Clock(now))
    plan = await service.run(
        trigger="cli", actor="cli:x", dry_run=True, only="bots,orphaned_results"
    )
    await store.hard_delete(doomed_elsewhere)

    applied = await service.run(trigger="cli", actor="cli:x", dry_run=False, plan_id=plan["run_id"])
    res = applied["resources"]
    assert applied["status"] == "partial"
    assert res["orphaned_results"]["outcome"] == "refused"
    assert (res["orphaned_results"]["found"], res["orphaned_results"]["deleted"]) == (3, 0)
    assert res["bots"]["deleted"] == 1 and str(expired) not in await store.bot_ids()
    (error,) = applied["errors"]
    assert error["stage"] == "orphaned_results" and "the plan had 1" in error["message"]


async def test_a_dry_run_of_a_plan_shows_what_applying_it_would_do(
    settings: Any, store: Store
) -> None:
    now = datetime.now(UTC)
    await store.orphans(2)
    service = make_service(settings, store, Clock(now))
    plan = await service.run(trigger="cli", actor="cli:x", dry_run=True)
    await store.orphans(5)
    preview = await service.run(trigger="cli", actor="cli:x", dry_run=True, plan_id=plan["run_id"])
    assert preview["resources"]["orphaned_results"]["found"] == 2
    assert preview["resources"]["orphaned_results"]["deleted"] == 0
    assert (await store.counts())["results"] == 7


async def test_plan_ids_are_checked(settings: Any, store: Store) -> None:
    service = make_service(settings, store)
    real = await service.run(trigger="cli", actor="cli:x", dry_run=False)
    with pytest.raises(PlanNotFound):
        await service.run(trigger="cli", actor="cli:x", dry_run=False, plan_id=real["run_id"])
    with pytest.raises(PlanNotFound):
        await service.run(trigger="cli", actor="cli:x", dry_run=False, plan_id=uuid.uuid4())
    with pytest.raises(InvalidInput, match="plan_id"):
        await service.run(trigger="cli", actor="cli:x", dry_run=False, plan_id="nope")
    with pytest.raises(InvalidInput, match="only"):
        await service.run(trigger="cli", actor="cli:x", dry_run=True, only="bots,everything")
    with pytest.raises(InvalidInput, match="bot_results"):
        await service.run(trigger="cli", actor="cli:x", dry_run=True, only=["bot_results"])
