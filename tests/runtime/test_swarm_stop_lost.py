"""A stop swarm lost (docs/reliability.md): a service botfleet scaled to zero whose task swarm
still means to run. Read from the service and its tasks as the engine lists them (pure),
planned for a stop again only when its bot has no row left (pure), and stopped again by the
reconciler through a real swarm."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from botfleet.config import Settings
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.reconcile import Reconciler
from botfleet.reconcile_plan import StopContainer, plan_lost_stops
from botfleet.runtime.base import ContainerInfo, ContainerSpec
from botfleet.runtime.fleet import Fleet
from botfleet.runtime.swarm_specs import workload
from botfleet.store.session import create_engine, create_session_factory
from tests.support.swarm import Swarm, docker
from tests.support.wait import wait_until_async
from tests.test_bots import insert_bot

BOT = uuid.UUID("00000000-0000-0000-0000-0000000000b2")


def service(replicas: int | None) -> dict[str, Any]:
    mode = {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}}
    labels = {LABEL_MANAGED: "true", LABEL_BOT_ID: str(BOT), LABEL_INSTANCE: "i"}
    return {
        "ID": "s1",
        "Version": {"Index": 7},
        "CreatedAt": "2026-12-06T18:00:00.000000000Z",
        "Spec": {"Name": f"botfleet-{BOT}", "Labels": labels, "Mode": mode},
    }


def task(state: str, desired: str, at: str = "2026-12-06T18:00:01.000000000Z") -> dict[str, Any]:
    return {
        "ID": f"t-{state}-{desired}",
        "Slot": 1,
        "DesiredState": desired,
        "Status": {"State": state, "Timestamp": at},
        "CreatedAt": at,
    }


@pytest.mark.parametrize(
    ("replicas", "tasks", "lost"),
    [
        # Scaled to zero, its task still meant to run: the stop was lost.
        (0, [task("running", "running")], True),
        (0, [task("starting", "running")], True),
        (0, [task("pending", "ready")], True),
        # Scaled to zero and stopping, or stopped: the stop took.
        (0, [task("running", "shutdown")], False),
        (0, [task("running", "remove")], False),
        (0, [task("shutdown", "shutdown")], False),
        (0, [], False),
        # Meant to run: a live bot, or a service botfleet did not scale (global mode).
        (1, [task("running", "running")], False),
        (None, [task("running", "running")], False),
        # A task in a final state is not running whatever its desired state says.
        (0, [task("failed", "running")], False),
    ],
)
def test_a_lost_stop_is_a_service_at_zero_with_a_task_meant_to_run(
    replicas: int | None, tasks: list[dict[str, Any]], lost: bool
) -> None:
    assert workload("swarm", service(replicas), tasks, {}).stop_lost is lost


def test_only_a_lost_stop_of_a_bot_without_a_row_is_planned_again() -> None:
    lost = workload("swarm", service(0), [task("running", "running")], {})
    taken = workload("swarm", service(0), [task("running", "shutdown")], {})
    other = uuid.uuid4()
    containers = {"swarm": [lost], "docker": []}
    assert plan_lost_stops(containers, {BOT}) == [StopContainer(BOT, "swarm", "s1")]
    assert plan_lost_stops(containers, {other}) == []  # its bot has a row: the usual rules
    assert plan_lost_stops({"swarm": [taken]}, {BOT}) == []


@pytest.mark.docker
async def test_the_reconciler_stops_again_a_purged_bots_service_whose_stop_was_lost(
    settings_factory: Callable[..., Settings],
    swarm: Swarm,
    registry_image: str,
    instance: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real engine: two services whose stop swarm lost (swarm will not lose one on
    demand, so the listing says so of two running services), one of a bot whose row is gone,
    one of a live bot. The first is scaled to zero and stops; the second is left running."""
    settings = settings_factory(
        bot_runtime="swarm", docker_hosts=swarm.manager.url, bot_network="none"
    )
    live_id, _ = await insert_bot(settings, "live-one")
    fleet = Fleet.from_settings(settings)
    db = create_engine(settings)
    reconciler = Reconciler(sessions=create_session_factory(db), fleet=fleet, settings=settings)
    engine = fleet.engines["swarm"]
    try:
        purged = await engine.run(bot_spec(instance, registry_image, uuid.uuid4()))
        live = await engine.run(bot_spec(instance, registry_image, live_id))
        for made in (purged, live):
            await wait_until_async(
                lambda m=made: _running(engine, m.id), timeout=60, message="a task to run"
            )
        listed = engine.list_managed

        async def lost_stops(of_instance: str) -> list[ContainerInfo]:
            return [replace(w, stop_lost=True) for w in await listed(of_instance)]

        monkeypatch.setattr(engine, "list_managed", lost_stops)
        stats = await reconciler.reconcile_once()
        monkeypatch.setattr(engine, "list_managed", listed)
        assert stats.stopped == 1
        service = json.loads(docker(swarm.manager.url, "service", "inspect", purged.id).stdout)
        assert service[0]["Spec"]["Mode"]["Replicated"]["Replicas"] == 0

        async def stopped() -> bool:
            found = await engine.inspect(purged.id)
            return found is not None and found.state == "exited"

        await wait_until_async(stopped, timeout=60, message="the purged bot's task to stop")
        assert await _running(engine, live.id)
    finally:
        swarm.remove_services(f"{LABEL_INSTANCE}={instance}")
        await reconciler.stop()
        await fleet.close()
        await db.dispose()


def bot_spec(instance: str, image: str, bot_id: uuid.UUID) -> ContainerSpec:
    return ContainerSpec(
        name=f"botfleet-{bot_id}",
        image=image,
        command=["sleep", "600"],
        env={"BOT_ID": str(bot_id)},
        labels={LABEL_MANAGED: "true", LABEL_BOT_ID: str(bot_id), LABEL_INSTANCE: instance},
        network="none",
    )


async def _running(engine: Any, service_id: str) -> bool:
    found = await engine.inspect(service_id)
    return found is not None and found.task_state == "running"
