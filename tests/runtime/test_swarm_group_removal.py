"""A group of services removed after one look at all of them, on a real swarm (safety rule 6):
the check sees each service's own version and tasks, the look is two calls whatever the
group's size, a running task keeps its service, a service gone between the two calls is never
read as one without tasks, and a manager that stops answering ends the group there."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest
import requests

from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.errors import EngineUnavailable
from botfleet.runtime import swarm_http, swarm_removal
from botfleet.runtime.base import ContainerInfo, RemovesInGroups
from botfleet.runtime.swarm import SwarmEngine
from tests.support.swarm import Swarm, docker
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.docker


@pytest.fixture
async def engine(swarm: Swarm, instance: str) -> Any:
    engine = SwarmEngine([swarm.manager.url])
    yield engine
    swarm.remove_services(f"{LABEL_INSTANCE}={instance}")
    await engine.close()


def service(swarm: Swarm, instance: str, image: str, *, replicas: int) -> str:
    bot = str(uuid.uuid4())
    labels = [f"{LABEL_MANAGED}=true", f"{LABEL_BOT_ID}={bot}", f"{LABEL_INSTANCE}={instance}"]
    # Named: swarm names an unnamed service at random and refuses a name a live service has.
    args = ["service", "create", "--detach", "-q", "--name", f"botfleet-{bot}"]
    args += [f"--replicas={replicas}", "--network", "host"]
    for label in labels:
        args += ["--label", label]
    return docker(swarm.manager.url, *args, image, "sleep", "600").stdout.strip()


async def running(engine: SwarmEngine, service_id: str) -> None:
    async def runs() -> bool:
        info = await engine.inspect(service_id)
        return info is not None and info.state == "running"

    await wait_until_async(runs, timeout=60, message=f"service {service_id} to run")


async def test_a_group_is_looked_at_in_two_calls_then_removed(
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(engine, RemovesInGroups)
    ids = [service(swarm, instance, registry_image, replicas=0) for _ in range(12)]
    listed = {w.id: w for w in await engine.list_managed(instance)}
    calls: list[str] = []
    for name in ("services_where", "tasks_of"):
        real = getattr(swarm_http, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(swarm_http, name, counted)
    checks: list[Mapping[str, ContainerInfo | None]] = []

    def check(found: Mapping[str, ContainerInfo | None]) -> dict[str, str | None]:
        checks.append(dict(found))
        return {}

    outcomes = await engine.remove_verified_group(ids, check)
    assert [o.id for o in outcomes if isinstance(o, ContainerInfo)] == ids
    assert calls == ["services_where", "tasks_of"]  # one look for the twelve
    (found,) = checks
    for i in ids:  # each service as itself, at the version the listing gave
        info = found[i]
        assert info is not None and info.version == listed[i].version
        assert info.state == "created" and info.bot_id == listed[i].bot_id
    assert await engine.list_managed(instance) == []


async def test_the_check_keeps_what_it_refuses_and_a_running_task_is_seen(
    engine: SwarmEngine, swarm: Swarm, instance: str, registry_image: str
) -> None:
    idle, kept = (service(swarm, instance, registry_image, replicas=0) for _ in "ab")
    busy = service(swarm, instance, registry_image, replicas=1)
    await running(engine, busy)

    def check(found: Mapping[str, ContainerInfo | None]) -> dict[str, str | None]:
        assert {i: (f.state if f else None) for i, f in found.items()} == {
            idle: "created",
            kept: "created",
            busy: "running",
        }
        return {kept: "a live bot owns it", busy: "running"}

    outcomes = await engine.remove_verified_group([idle, kept, busy, "no-such-service"], check)
    assert isinstance(outcomes[0], ContainerInfo) and outcomes[0].id == idle
    assert outcomes[1:] == ["a live bot owns it", "running", "already gone"]
    assert {w.id for w in await engine.list_managed(instance)} == {kept, busy}


async def test_a_service_gone_between_the_two_calls_is_not_read_as_taskless(
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tasks of several services are one call that answers 404 for all of them when one is
    gone; the look then reads each service alone rather than take the 404 for "no tasks"."""
    busy = service(swarm, instance, registry_image, replicas=1)
    gone = service(swarm, instance, registry_image, replicas=0)
    await running(engine, busy)
    client = engine.managers.client(swarm.manager.url)
    plain = engine.managers.plain(client)
    assert plain is not None
    stale = swarm_http.services_where(plain, {"id": [busy, gone]})
    assert len(stale) == 2
    docker(swarm.manager.url, "service", "rm", gone)
    # The services were read just before the other removed one of them.
    monkeypatch.setattr(swarm_http, "services_where", lambda http, filters: stale)
    found = swarm_removal.workloads(engine, client, [busy, gone])
    assert (info := found[busy]) is not None and info.state == "running"
    assert found.get(gone) is None


async def test_a_manager_that_stops_answering_ends_the_group_there(
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Removals made stay reported; the rest fail as the engine's, and are not tried again on
    another manager (the group would look again and call the removed ones "already gone")."""
    ids = [service(swarm, instance, registry_image, replicas=0) for _ in range(3)]
    real = engine.remove_service
    made: list[str] = []

    def flaky(client: Any, service_id: str) -> None:
        if made:
            raise requests.exceptions.ConnectionError("the manager went away")
        made.append(service_id)
        real(client, service_id)

    monkeypatch.setattr(engine, "remove_service", flaky)
    outcomes = await engine.remove_verified_group(ids, lambda found: {})
    assert isinstance(outcomes[0], ContainerInfo) and outcomes[0].id == ids[0]
    assert all(isinstance(o, EngineUnavailable) for o in outcomes[1:])
    assert {w.id for w in await engine.list_managed(instance)} == set(ids[1:])
