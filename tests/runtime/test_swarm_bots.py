"""Bots on a real two-node swarm through the API (``BOT_RUNTIME=swarm``): swarm places them on
both nodes, a bot's status follows its service's current task (running, exited, failed with its
exit code and swarm's error, pending with swarm's reason), delete scales the service to zero and
keeps it, restore scales it back with a new token, and what swarm refuses is a 422 naming the
field."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from botfleet.config import Settings
from tests.conftest import TEST_TOKEN, started_app
from tests.support.swarm import Swarm, docker
from tests.support.wait import wait_until, wait_until_async

pytestmark = pytest.mark.docker
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


@pytest.fixture
def swarm_settings(
    settings_factory: Callable[..., Settings], swarm: Swarm, instance: str
) -> Iterator[Settings]:
    yield settings_factory(
        bot_runtime="swarm",
        docker_hosts=swarm.manager.url,
        bot_restart_policy="on-failure:1",
        reconcile_interval_seconds=1,
    )
    swarm.remove_services(f"botfleet.instance={instance}")


@pytest.fixture
async def api(swarm_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app, ctx = await started_app(swarm_settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50100))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH, timeout=60
        ) as client:
            yield client
    finally:
        await ctx.__aexit__(None, None, None)


async def create(api: httpx.AsyncClient, name: str, image: str, **extra: Any) -> dict[str, Any]:
    answer = await api.post("/bots", json={"name": name, "image": image, **extra})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def bot_when(
    api: httpx.AsyncClient, bot_id: str, ready: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/bots/{bot_id}")).json()
        return body if ready(body) else None

    found: dict[str, Any] = await wait_until_async(seen, timeout=90, message=what, interval=0.2)
    return found


def clear(swarm: Swarm) -> None:
    """No service of an earlier test left, and none of its tasks still running on a node: swarm
    spreads a service's task by the tasks each node runs, so leftovers (the node-failure test
    moves every task to the manager) would tilt the placement this test looks at."""
    ids = swarm.services()
    if ids:
        docker(swarm.manager.url, "service", "rm", *ids, check=False)

    def idle() -> bool:
        return not any(
            docker(url, "ps", "-q", "--filter", "label=com.docker.swarm.service.id").stdout.split()
            for url in (swarm.manager.url, swarm.worker.url)
        )

    wait_until(idle, timeout=90, message="no swarm task running on either node", interval=0.2)


async def test_swarm_places_the_bots_on_both_nodes(
    api: httpx.AsyncClient, registry_image: str, swarm: Swarm
) -> None:
    clear(swarm)
    bots = [
        await create(api, f"spread-{i}", registry_image, command=["sleep", "600"])
        for i in range(10)
    ]
    assert {b["engine"] for b in bots} == {"swarm"}  # one engine: the swarm, which places
    running = [
        await bot_when(api, b["id"], lambda b: b["status"] == "running", "every bot to run")
        for b in bots
    ]
    nodes = {b["node"] for b in running}
    assert len(nodes) == 2, nodes
    for bot in running:
        labels = docker(
            swarm.manager.url,
            "service",
            "inspect",
            bot["container_id"],
            "--format",
            "{{json .Spec.Labels}} {{json .Spec.TaskTemplate.ContainerSpec.Labels}}",
        ).stdout
        assert labels.count(f'"botfleet.bot-id":"{bot["id"]}"') == 2


async def test_status_follows_the_current_task(api: httpx.AsyncClient, registry_image: str) -> None:
    done = await create(api, "done", registry_image, command=["true"])
    broken = await create(api, "broken", registry_image, command=["sh", "-c", "exit 3"])
    greedy = await create(
        api,
        "greedy",
        registry_image,
        command=["sleep", "600"],
        resources={"memory_reservation": "1T"},
    )
    nowhere = await create(api, "nowhere", registry_image, placement=["node.labels.zone==nowhere"])
    exited = await bot_when(api, done["id"], lambda b: b["status"] == "exited", "an exit 0")
    assert exited["exit_code"] == 0
    failed = await bot_when(
        api, broken["id"], lambda b: b["status"] == "failed", "a failure after its restart"
    )
    assert failed["exit_code"] == 3 and "non-zero exit (3)" in (failed["status_detail"] or "")
    waiting = await bot_when(
        api,
        greedy["id"],
        lambda b: "no suitable node" in (b["status_detail"] or ""),
        "swarm's reason to wait",
    )
    assert waiting["status"] == "pending" and "insufficient resources" in waiting["status_detail"]
    assert waiting["resources"] == {"memory_reservation": 1024**4}
    placed = await bot_when(
        api,
        nowhere["id"],
        lambda b: "no suitable node" in (b["status_detail"] or ""),
        "swarm's reason to wait",
    )
    assert placed["status"] == "pending" and placed["placement"] == ["node.labels.zone==nowhere"]


async def test_delete_scales_to_zero_and_restore_brings_a_new_token(
    api: httpx.AsyncClient, registry_image: str, swarm: Swarm
) -> None:
    bot = await create(api, "phoenix", registry_image, command=["sleep", "600"])
    await bot_when(api, bot["id"], lambda b: b["status"] == "running", "the bot to run")
    assert (await api.delete(f"/bots/{bot['id']}")).status_code == 200
    replicas = docker(
        swarm.manager.url,
        "service",
        "inspect",
        bot["container_id"],
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
    ).stdout.strip()
    assert replicas == "0"  # kept, at zero: nothing is removed by a delete
    post = await api.post(
        f"/bots/{bot['id']}/results",
        json={"data": {"n": 1}},
        headers={"Authorization": f"Bearer {bot['token']}"},
    )
    assert post.status_code == 410
    restored = await api.post(f"/bots/{bot['id']}/restore")
    assert restored.status_code == 200, restored.text
    token = restored.json()["token"]
    assert token and token != bot["token"]
    env = docker(
        swarm.manager.url,
        "service",
        "inspect",
        bot["container_id"],
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
    ).stdout
    assert f"BOT_TOKEN={token}" in env
    await bot_when(api, bot["id"], lambda b: b["status"] == "running", "the bot to run again")
    # The new token posts; the old one is refused.
    new = await api.post(
        f"/bots/{bot['id']}/results",
        json={"data": {"n": 2}},
        headers={"Authorization": f"Bearer {token}"},
    )
    old = await api.post(
        f"/bots/{bot['id']}/results",
        json={"data": {"n": 3}},
        headers={"Authorization": f"Bearer {bot['token']}"},
    )
    assert (new.status_code, old.status_code) == (201, 401)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"placement": ["node.role==manager==worker"]}, "placement"),  # swarm refuses
        ({"placement": ["zone=eu"]}, "placement"),  # ours: not a constraint
        ({"resources": {"cpu_limit": -1}}, "resources"),
        ({"resources": {"memory_limit": "1K"}}, "resources"),
        ({"resources": {"memory_limit": "64M", "memory_reservation": "1G"}}, "resources"),
    ],
)
async def test_what_is_refused_names_the_field(
    api: httpx.AsyncClient, registry_image: str, extra: dict[str, Any], field: str
) -> None:
    answer = await api.post("/bots", json={"name": "refused", "image": registry_image, **extra})
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    listed = (await api.get("/bots")).json()
    assert listed["total"] == 0  # nothing half-made


async def test_an_unreachable_manager_is_a_503_on_create(
    settings_factory: Callable[..., Settings], registry_image: str
) -> None:
    settings = settings_factory(bot_runtime="swarm", docker_hosts="unix:///nonexistent/d.sock")
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50101))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as c:
            answer = await c.post("/bots", json={"name": "x", "image": registry_image})
            assert answer.status_code == 503, answer.text
            assert (await c.get("/bots")).json()["total"] == 0
    finally:
        await ctx.__aexit__(None, None, None)


async def test_a_plain_engine_refuses_placement_by_name(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sample_image: str,
    cleanup_containers: None,
) -> None:
    """Refused before anything else is looked at: even a name a live bot holds answers 422."""
    first = await client.post(
        "/bots", json={"name": "p", "image": sample_image}, headers=admin_headers
    )
    assert first.status_code == 201, first.text
    for extra, field in (
        ({"placement": ["node.role==worker"]}, "placement"),
        ({"resources": {"cpu_limit": 0.5}}, "resources"),
    ):
        answer = await client.post(
            "/bots", json={"name": "p", "image": sample_image, **extra}, headers=admin_headers
        )
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field]
    listed = (await client.get("/bots", headers=admin_headers)).json()
    assert listed["total"] == 1
