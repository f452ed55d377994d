"""The swarm runtime against a real two-node swarm: a bot is a service of one replica whose
labels are on the service and on its containers; stop scales it to zero and keeps it; revive
brings it back with a new environment; removal looks at the service again; a manager that is
down or no manager at all is passed over for the next one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from botfleet.api.schemas import patterns
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.errors import EngineUnavailable, InvalidInput
from botfleet.runtime.base import ContainerEngine, ContainerInfo, ContainerSpec, Resources
from botfleet.runtime.swarm import SwarmEngine
from tests.support.swarm import Swarm, docker
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.docker


def spec(instance: str, image: str, **overrides: Any) -> ContainerSpec:
    bot_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "name": f"botfleet-{bot_id}",
        "image": image,
        "command": ["sleep", "600"],
        "env": {"BOT_ID": bot_id, "BOT_TOKEN": "first"},
        "labels": {LABEL_MANAGED: "true", LABEL_BOT_ID: bot_id, LABEL_INSTANCE: instance},
        "network": "host",
    }
    values.update(overrides)
    return ContainerSpec(**values)


@pytest.fixture
async def engine(swarm: Swarm, instance: str) -> Any:
    engine = SwarmEngine([swarm.manager.url], restart="on-failure:2")
    yield engine
    swarm.remove_services(f"{LABEL_INSTANCE}={instance}")
    await engine.close()


async def state_of(engine: SwarmEngine, service_id: str, wanted: str) -> ContainerInfo:
    async def reached() -> ContainerInfo | None:
        info = await engine.inspect(service_id)
        return info if info is not None and info.task_state == wanted else None

    found: ContainerInfo = await wait_until_async(
        reached, timeout=60, message=f"service {service_id} to be {wanted}"
    )
    return found


async def test_a_bot_is_a_service_of_one_replica_labelled_twice(
    engine: SwarmEngine, swarm: Swarm, instance: str, registry_image: str
) -> None:
    assert isinstance(engine, ContainerEngine) and engine.workload_kind == "services"
    made = spec(instance, registry_image)
    info = await engine.run(made)
    service = docker(swarm.manager.url, "service", "inspect", info.id).stdout
    assert '"Replicas": 1' in service and '"Condition": "on-failure"' in service
    assert '"MaxAttempts": 2' in service
    running = await state_of(engine, info.id, "running")
    assert running.state == "running" and running.node
    assert running.labels[LABEL_BOT_ID] == made.labels[LABEL_BOT_ID]
    # The task's container carries botfleet's labels too (the container stage reads them).
    node = swarm.manager if running.node == await _hostname_of(swarm.manager.url) else None
    urls = [node.url] if node else [swarm.manager.url, swarm.worker.url]
    labelled = [
        docker(
            url, "ps", "-q", "--filter", f"label={LABEL_BOT_ID}={made.labels[LABEL_BOT_ID]}"
        ).stdout.strip()
        for url in urls
    ]
    assert any(labelled)
    listed = await engine.list_managed(instance)
    assert [w.id for w in listed] == [info.id]


async def _hostname_of(url: str) -> str:
    return docker(url, "info", "--format", "{{.Name}}").stdout.strip()


async def test_stop_keeps_the_service_and_revive_brings_it_back_with_a_new_env(
    engine: SwarmEngine, swarm: Swarm, instance: str, registry_image: str
) -> None:
    made = spec(instance, registry_image)
    info = await engine.run(made)
    await state_of(engine, info.id, "running")
    await engine.stop(info.id)

    async def stopped() -> ContainerInfo | None:
        found = await engine.inspect(info.id)
        return found if found is not None and found.state == "exited" else None

    gone = await wait_until_async(stopped, timeout=60, message="the service's task to stop")
    assert gone.task_state == "shutdown" and gone.finished_at is not None
    renewed = {**made.env, "BOT_TOKEN": "second"}
    revived = await engine.revive(info.id, spec(instance, registry_image, env=renewed))
    assert revived is not None and revived.fresh_env
    await state_of(engine, info.id, "running")
    env = docker(
        swarm.manager.url,
        "service",
        "inspect",
        info.id,
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
    ).stdout
    assert "BOT_TOKEN=second" in env and "BOT_TOKEN=first" not in env
    assert await engine.revive("nosuchservice", made) is None


async def test_removal_looks_at_the_service_again(
    engine: SwarmEngine, instance: str, registry_image: str
) -> None:
    info = await state_of(engine, (await engine.run(spec(instance, registry_image))).id, "running")
    seen: list[ContainerInfo | None] = []

    def refuse(found: ContainerInfo | None) -> str | None:
        seen.append(found)
        return "not today"

    assert await engine.remove_verified(info.id, refuse) == "not today"
    assert seen and seen[0] is not None and seen[0].version == info.version
    removed = await engine.remove_verified(info.id, lambda found: None)
    assert isinstance(removed, ContainerInfo) and removed.id == info.id
    assert await engine.inspect(info.id) is None
    assert await engine.remove_verified(info.id, lambda found: None) == "already gone"


async def test_a_service_is_looked_at_and_removed_over_the_plain_route(
    engine: SwarmEngine, instance: str, registry_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The calls made once per service go over plain HTTP (a fifth of the SDK's client CPU),
    not through docker-py; what they answer is the same."""
    made = await engine.run(spec(instance, registry_image))
    for name in ("inspect_service", "tasks", "remove_service"):
        for client in engine.managers.clients.values():
            monkeypatch.setattr(client.api, name, _not_the_sdk(name))
    info = await engine.inspect(made.id)
    assert info is not None and info.id == made.id and info.bot_id == made.bot_id
    removed = await engine.remove_verified(made.id, lambda found: None)
    # Its version may have moved since (swarm writes the service as its task starts).
    assert isinstance(removed, ContainerInfo) and removed.id == info.id
    assert removed.version is not None and info.version is not None
    assert removed.version >= info.version
    assert await engine.inspect(made.id) is None
    assert await engine.remove_verified(made.id, lambda found: None) == "already gone"


async def test_the_listing_goes_over_the_plain_route(
    engine: SwarmEngine, instance: str, registry_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cleanup and each reconcile pass lists every service with its tasks: over plain
    HTTP, as the calls made once per service; a unix socket's SDK calls read no proxy
    variables (BENCHMARKS.md, "Swarm")."""
    made = await engine.run(spec(instance, registry_image))
    await state_of(engine, made.id, "running")
    for client in engine.managers.clients.values():
        assert client.api.trust_env is False
        for name in ("services", "tasks"):
            monkeypatch.setattr(client.api, name, _not_the_sdk(name))
    (listed,) = await engine.list_managed(instance)
    assert listed.id == made.id and listed.state == "running" and listed.node


async def test_a_create_is_one_engine_call_with_no_inspect_after_it(
    engine: SwarmEngine,
    swarm: Swarm,
    instance: str,
    registry_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new service has no task worth reading yet: the create answers from what it asked, and
    the bot stays pending until the reconciler sees its task run (BENCHMARKS.md, "Swarm")."""
    made = spec(instance, registry_image)
    monkeypatch.setattr(engine, "workload_of", _not_the_sdk("an inspect after the create"))
    info = await engine.run(made)
    assert info.engine == engine.name and info.name == made.name
    assert info.bot_id == made.labels[LABEL_BOT_ID] and info.belongs_to(instance)
    assert info.state == "created" and info.task_state == "new" and info.node is None
    assert info.id in docker(swarm.manager.url, "service", "inspect", info.id).stdout


def _not_the_sdk(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} went through docker-py")

    return refuse


async def test_what_swarm_refuses_names_the_field(
    engine: SwarmEngine, instance: str, registry_image: str
) -> None:
    with pytest.raises(InvalidInput) as bad_constraint:
        await engine.run(spec(instance, registry_image, placement=("node.nonsense~~x",)))
    assert bad_constraint.value.field == "placement"
    # No node can give this much: not a refusal but a task that waits, and says why.
    huge = Resources(memory_reservation=1024**4)
    info = await engine.run(spec(instance, registry_image, resources=huge))

    async def told_why() -> ContainerInfo | None:
        found = await engine.inspect(info.id)
        return found if found is not None and "no suitable node" in (found.detail or "") else None

    pending = await wait_until_async(told_why, timeout=60, message="swarm to say why it waits")
    assert pending.task_state == "pending" and "insufficient resources" in (pending.detail or "")


@pytest.mark.parametrize(
    "constraint",
    [
        "node.labels.zone==eu",
        " node.role != manager ",
        "engine.labels.gpu==[ab]+",
        "node.labels.path==/a/b:c",
        "node.labels.x==a b",
        "node.labels.x==a\\b^$|()?*.-_",
    ],
)
async def test_swarm_takes_every_constraint_the_document_allows(
    engine: SwarmEngine, instance: str, registry_image: str, constraint: str
) -> None:
    """The document's pattern (patterns.CONSTRAINT) is no wider than what swarm accepts."""
    assert patterns.matches(patterns.CONSTRAINT, constraint)
    info = await engine.run(spec(instance, registry_image, placement=(constraint.strip(),)))
    assert info.id


async def test_a_manager_that_does_not_answer_is_passed_over(swarm: Swarm, instance: str) -> None:
    dead = "unix:///nonexistent/docker.sock"
    failing_over = SwarmEngine([dead, swarm.manager.url])
    try:
        await failing_over.ping()
        assert failing_over.managers.current_url == swarm.manager.url
        assert await failing_over.list_managed(instance) == []
    finally:
        await failing_over.close()
    # A plain engine, not a manager of any swarm, is no manager either.
    nothing = SwarmEngine([dead, "unix:///var/run/docker.sock"])
    try:
        with pytest.raises(EngineUnavailable, match="not a swarm manager"):
            await nothing.ping()
        # The same over the plain route a cleanup's per-service calls take.
        with pytest.raises(EngineUnavailable, match=r"nonexistent.*not a swarm manager"):
            await nothing.inspect("no-such-service")
    finally:
        await nothing.close()
    nodes = await SwarmEngine([swarm.manager.url]).nodes()
    assert len(nodes) == 2 and {n["role"] for n in nodes} == {"manager", "worker"}
