"""deploy/swarm-stack.yaml deployed with ``docker stack deploy`` on a single-node swarm of the
test's own (a separate dockerd: its own socket, data root, exec root and pid file, no bridge, no
iptables): two server replicas answer /healthz, scheduled cleanup runs never overlap (the
advisory lock, read back from ``cleanup_runs``), and a bot runs as a service of that swarm.

The images reach the swarm's node through the local registry on 127.0.0.1:5000.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, missing_service
from tests.deploy.images import built
from tests.engines import EngineStartError, ExtraEngine
from tests.servers import free_port
from tests.support.swarm import HEARTBEAT, docker, push, registry_answers
from tests.support.wait import WaitTimeout, wait_until

# The first test waits for the image builds and pushes (minutes on a cold cache; BENCHMARKS.md).
pytestmark = [pytest.mark.deploy, pytest.mark.docker, pytest.mark.timeout(1500)]
STACK_FILE = ROOT / "deploy/swarm-stack.yaml"
SECONDS = 1 / 3600  # CLEANUP_INTERVAL_HOURS per second


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def slot_port_prefix() -> str:
    """A prefix P such that ports P1 and P2 (the replicas' slots) are free on loopback."""
    for _ in range(200):
        prefix = random.randint(2000, 6500)
        if bindable(prefix * 10 + 1) and bindable(prefix * 10 + 2):
            return str(prefix)
    raise AssertionError("no free pair of slot ports")


@pytest.fixture(scope="module")
def manager() -> Iterator[ExtraEngine]:
    """A one-node swarm on a dockerd of this module's own, removed with everything in it."""
    if os.geteuid() != 0:
        missing_service("a dockerd of the test's own (needs root)")
    if not registry_answers():
        missing_service("the local registry at 127.0.0.1:5000")
    engine = ExtraEngine()
    try:
        engine.start()
        addr = f"127.0.0.1:{free_port()}"
        docker(engine.url, "swarm", "init", "--advertise-addr", addr, "--listen-addr", addr,
               "--dispatcher-heartbeat", HEARTBEAT)  # fmt: skip
    except (EngineStartError, RuntimeError) as exc:
        engine.remove()
        missing_service(f"a one-node swarm ({exc})")
    yield engine
    docker(engine.url, "swarm", "leave", "--force", check=False)
    engine.remove()


@pytest.fixture(scope="module")
def stack(manager: ExtraEngine, registry_image: str) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:10]
    prefix = slot_port_prefix()
    env = {
        **os.environ,
        "DOCKER_HOST": manager.url,
        # One tag each, pushed over at every run: the registry keeps no pile of old tags (their
        # layers stay until `docker-registry garbage-collect`).
        "BOTFLEET_IMAGE": push(built("server"), "botfleet-test/server:stack"),
        "POSTGRES_IMAGE": push(built("postgres"), "botfleet-test/postgres-server:stack"),
        "ADMIN_TOKEN": secrets.token_hex(24),
        "METRICS_TOKEN": secrets.token_hex(24),
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "POSTGRES_PORT": str(free_port()),
        "DOCKER_GID": str(os.stat(manager.socket).st_gid),
        "DOCKER_SOCKET": str(manager.socket),
        "BOTFLEET_PORT_PREFIX": prefix,
        "BOTFLEET_INSTANCE": f"stack{tag}",
        "BOT_IMAGE_PULL": "if-not-present",
        # A scheduled run every 2 s in each replica: they contend for the lock all the time.
        "CLEANUP_ENABLED": "true",
        "CLEANUP_ADAPTIVE": "false",
        "CLEANUP_INTERVAL_HOURS": str(2 * SECONDS),
        "CLEANUP_STARTUP_DELAY_SECONDS": "0",
    }
    done = subprocess.run(
        ["docker", "stack", "deploy", "-c", str(STACK_FILE), "botfleet"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield {
        "env": env,
        "urls": [f"http://127.0.0.1:{prefix}{slot}" for slot in (1, 2)],
        "registry_image": registry_image,
    }
    subprocess.run(["docker", "stack", "rm", "botfleet"], env=env, capture_output=True, timeout=120)
    # The main engine's tags of the pushed images (the registry keeps its own copy).
    for image in (env["BOTFLEET_IMAGE"], env["POSTGRES_IMAGE"]):
        subprocess.run(["docker", "rmi", image], capture_output=True, timeout=60)


def healthz(url: str) -> bool:
    return httpx.get(f"{url}/healthz", timeout=3).status_code == 200


def wait_replicas(manager: ExtraEngine, urls: list[str]) -> None:
    """Both replicas answer /healthz; otherwise fail with what swarm says of the tasks."""
    try:
        for url in urls:
            wait_until(lambda url=url: healthz(url), timeout=240, message=f"{url}/healthz",
                       interval=1, ignore=(httpx.HTTPError,))  # fmt: skip
    except WaitTimeout as exc:
        tasks = docker(manager.url, "service", "ps", "--no-trunc", "botfleet_server",
                       "botfleet_postgres", check=False)  # fmt: skip
        raise AssertionError(f"{exc}\n{tasks.stdout}") from exc


def test_two_replicas_answer_healthz(manager: ExtraEngine, stack: dict[str, Any]) -> None:
    wait_replicas(manager, stack["urls"])

    def running() -> int:
        tasks = docker(manager.url, "service", "ps", "botfleet_server", "--filter",
                       "desired-state=running", "--format", "{{.CurrentState}}").stdout  # fmt: skip
        return sum(state.startswith("Running") for state in tasks.split("\n"))

    # Swarm counts a task as running once the image's HEALTHCHECK has said healthy.
    wait_until(lambda: running() == 2, timeout=120, message="two running server tasks", interval=1)


def runs(env: dict[str, str]) -> list[tuple[datetime, datetime, str]]:
    import asyncpg

    async def fetch() -> list[tuple[datetime, datetime, str]]:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=int(env["POSTGRES_PORT"]), user="postgres",
            password=env["POSTGRES_PASSWORD"], database="botfleet",
        )  # fmt: skip
        try:
            rows = await conn.fetch(
                "SELECT started_at, finished_at, owner FROM cleanup_runs "
                "WHERE trigger = 'schedule' AND finished_at IS NOT NULL ORDER BY started_at"
            )
        finally:
            await conn.close()
        return [(row["started_at"], row["finished_at"], row["owner"]) for row in rows]

    return asyncio.run(fetch())


def test_scheduled_runs_never_overlap(manager: ExtraEngine, stack: dict[str, Any]) -> None:
    wait_replicas(manager, stack["urls"])
    done = wait_until(lambda: len(found := runs(stack["env"])) >= 4 and found, timeout=120,
                      message="four scheduled runs", interval=1)  # fmt: skip
    for (_, finished, _), (started, _, _) in itertools.pairwise(done):
        assert finished <= started, done
    # Both replicas tried (each holds a scheduler); the lock let one run at a time.
    assert len({owner for _, _, owner in done}) >= 1


def test_a_bot_runs_as_a_service_of_the_swarm(manager: ExtraEngine, stack: dict[str, Any]) -> None:
    url = stack["urls"][0]
    wait_replicas(manager, stack["urls"])
    headers = {"Authorization": f"Bearer {stack['env']['ADMIN_TOKEN']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        created = client.post("/bots", json={
            "name": "on-the-stack", "image": stack["registry_image"],
            "env": {"RESULT_INTERVAL_SECONDS": "1"},
        })  # fmt: skip
        assert created.status_code == 201, created.text
        bot_id = created.json()["id"]
        wait_until(lambda: client.get(f"/bots/{bot_id}/results").json()["total"] > 0,
                   timeout=120, message="the bot's first result", interval=1)  # fmt: skip
        services = docker(manager.url, "service", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"botfleet-{bot_id}" in services
        assert client.get(f"/bots/{bot_id}").json()["engine"] == "swarm"
        client.delete(f"/bots/{bot_id}")
