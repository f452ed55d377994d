"""Scenario: a swarm node dies (``kill -9`` of its ``dockerd``) while bots run on it. Swarm marks
it down and reschedules its tasks on the manager; botfleet shows every bot ``running`` again within
RECONCILE_INTERVAL_SECONDS plus swarm's own detection time; no bot is lost, and a real cleanup run
meanwhile removes nothing live (the manager's event log shows no service removed)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import docker
import httpx
import pytest

from botfleet.config import Settings
from tests.conftest import TEST_TOKEN, started_app
from tests.support.figures import record_figure
from tests.support.swarm import HEARTBEAT, Swarm
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.docker
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
RECONCILE_SECONDS = 2.0
BOTS = 6


class SwarmEvents:
    """The manager's service and container events, read live from ``start()`` on."""

    def __init__(self, url: str) -> None:
        self.client = docker.DockerClient(base_url=url)
        self.events: list[dict[str, Any]] = []
        self._stream: Any = None

    def start(self) -> SwarmEvents:
        self._stream = self.client.events(decode=True, filters={"type": ["service", "container"]})
        threading.Thread(target=self._read, name="swarm-events", daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            for event in self._stream:
                self.events.append(event)
        except Exception:  # the stream ends when close() closes it
            return

    def close(self) -> None:
        try:
            self._stream.close()
            self.client.close()
        except Exception:  # a stream of a daemon killed mid-test is already gone
            pass

    def destroyed_containers(self, services: set[str]) -> list[str]:
        """Containers of tasks of ``services`` destroyed (the swarm is shared with the tests
        before: their services' containers may still be going while this one runs)."""
        return [
            str(e.get("Actor", {}).get("ID"))
            for e in self.events
            if e.get("Type") == "container"
            and e.get("Action") == "destroy"
            and e.get("Actor", {}).get("Attributes", {}).get("com.docker.swarm.service.id")
            in services
        ]

    def containers_of(self, services: set[str]) -> list[str]:
        """Containers of tasks of ``services`` that any event names."""
        return [
            str(e.get("Actor", {}).get("ID"))
            for e in self.events
            if e.get("Type") == "container"
            and e.get("Actor", {}).get("Attributes", {}).get("com.docker.swarm.service.id")
            in services
        ]

    def removed_services(self) -> list[str]:
        return [
            str(e.get("Actor", {}).get("ID"))
            for e in self.events
            if e.get("Type") == "service" and e.get("Action") == "remove"
        ]


async def test_a_dead_node_s_bots_run_again_and_nothing_live_is_removed(
    pg_factory: Callable[..., Settings], swarm: Swarm, registry_image: str, instance: str
) -> None:
    settings = pg_factory(
        bot_runtime="swarm",
        docker_hosts=swarm.manager.url,
        reconcile_interval_seconds=RECONCILE_SECONDS,
        bot_retention_days=0,
        container_cleanup_grace_minutes=0,
    )
    app, ctx = await started_app(settings)
    events = SwarmEvents(swarm.manager.url).start()
    worker_events = SwarmEvents(swarm.worker.url).start()  # read live until its daemon dies
    worker_node = swarm.node_of(swarm.worker.url)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50200))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH, timeout=60
        ) as api:
            made = []
            for i in range(BOTS):
                answer = await api.post(
                    "/bots",
                    json={"name": f"n{i}", "image": registry_image, "command": ["sleep", "900"]},
                )
                assert answer.status_code == 201, answer.text
                made.append(answer.json()["id"])

            async def statuses() -> list[dict[str, Any]]:
                return [(await api.get(f"/bots/{b}")).json() for b in made]

            async def all_running() -> list[dict[str, Any]] | None:
                bots = await statuses()
                return bots if all(b["status"] == "running" for b in bots) else None

            before = await wait_until_async(all_running, timeout=120, message="every bot to run")
            on_worker = [b["id"] for b in before if worker_node[:12] in (b["node"] or "")]
            assert on_worker, f"swarm put nothing on the worker: {[b['node'] for b in before]}"

            # The worker's daemon dies without a word.
            assert swarm.worker._proc is not None
            os.kill(swarm.worker._proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            sweep = asyncio.create_task(
                api.post("/admin/cleanup", params={"dry_run": "false"}, timeout=120)
            )

            async def back() -> list[dict[str, Any]] | None:
                bots = await statuses()
                moved = all(worker_node[:12] not in (b["node"] or "") for b in bots)
                ok = all(b["status"] == "running" for b in bots) and moved
                return bots if ok else None

            after = await wait_until_async(
                back, timeout=180, message="every bot running on a live node", interval=0.25
            )
            took = time.monotonic() - killed
            report = (await sweep).json()
            again = await api.post("/admin/cleanup", params={"dry_run": "false"})
            assert again.status_code == 200
            live = (await api.get("/bots", params={"limit": 100})).json()
    finally:
        await ctx.__aexit__(None, None, None)
        events.close()
        worker_events.close()
        swarm.revive_worker()
    assert {b["id"] for b in after} == set(made) and len(live["items"]) == BOTS
    assert all(b["deleted_at"] is None for b in live["items"])  # no bot lost
    services = {b["container_id"] for b in before}
    # No cleanup removed a live one: the manager's log (services, and its containers) and the
    # worker's up to its death show no service removed and no container destroyed.
    assert services.isdisjoint(events.removed_services())
    assert worker_events.events, "the worker's event stream was not read"
    # The filter below reads the service id off each container event: it does see ours.
    assert events.containers_of(services), "no container event of the bots' services was read"
    for log in (events, worker_events):
        assert services.isdisjoint(log.removed_services())
        assert log.destroyed_containers(services) == []
    for run in (report, again.json()):
        assert run["resources"]["services"]["deleted"] == 0, run["resources"]["services"]
        assert run["resources"]["bots"]["deleted"] == 0
    record_figure(
        "swarm_node_failure",
        bots=BOTS,
        on_the_dead_node=len(on_worker),
        seconds_until_all_running=round(took, 1),
        reconcile_interval_seconds=RECONCILE_SECONDS,
        dispatcher_heartbeat=HEARTBEAT,
        services_removed=0,
    )
