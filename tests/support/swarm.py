"""A real two-node Docker Swarm of the test session's own, and the local registry its nodes pull
from.

Two ``dockerd`` of their own (:class:`tests.engines.ExtraEngine`) form the swarm on loopback: the
manager listens on a free loopback port (2377 in the verified set-up of this machine kind; a free
one here, so that two suites can run at once), the worker joins from another. Services run with
host networking, so no overlay network is needed. The nodes pull bot images from the registry on
127.0.0.1:5000 (Debian's ``docker-registry``, started by ``scripts/ensure-services.sh``): a
loopback registry needs no TLS.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.engines import ExtraEngine
from tests.servers import free_port
from tests.support.wait import wait_until

REGISTRY = "127.0.0.1:5000"
# How often nodes report to the manager: a node is down after a few missed beats.
HEARTBEAT = "2s"


def registry_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def push(image: str, name: str) -> str:
    """``image`` of the main engine, pushed to the local registry as ``name``; its reference."""
    target = f"{REGISTRY}/{name}"
    for command in (["docker", "tag", image, target], ["docker", "push", "-q", target]):
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    return target


def docker(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", "-H", url, *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()[-400:]}")
    return done


class SwarmBroken(RuntimeError):
    """The session's swarm is not usable: what is wrong, then each daemon's state and log tail."""

    def __init__(self, what: str, swarm: Swarm) -> None:
        lines = [what]
        for name, engine in swarm.engines():
            lines.append(f"{name} dockerd running={engine.running}, {engine.log_path}:")
            lines.extend("  " + line for line in engine.tail(8).splitlines())
        super().__init__("\n".join(lines))


@dataclass
class Swarm:
    """The session's swarm: ``manager.url`` goes into ``DOCKER_HOSTS``."""

    manager: ExtraEngine = field(default_factory=ExtraEngine)
    worker: ExtraEngine = field(default_factory=ExtraEngine)
    manager_addr: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    worker_addr: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")

    def start(self) -> None:
        # The two daemons start side by side: each waits for its own ping.
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(engine.start) for engine in (self.manager, self.worker)]:
                started.result()
        docker(
            self.manager.url,
            "swarm",
            "init",
            "--advertise-addr",
            self.manager_addr,
            "--listen-addr",
            self.manager_addr,
            "--dispatcher-heartbeat",
            HEARTBEAT,
        )
        token = docker(self.manager.url, "swarm", "join-token", "-q", "worker").stdout.strip()
        docker(
            self.worker.url,
            "swarm",
            "join",
            "--token",
            token,
            "--listen-addr",
            self.worker_addr,
            "--advertise-addr",
            self.worker_addr,
            self.manager_addr,
        )
        self.wait_ready()

    def nodes(self) -> list[dict[str, Any]]:
        rows = docker(
            self.manager.url, "node", "ls", "--format", "{{.ID}} {{.Status}} {{.Availability}}"
        ).stdout.split("\n")
        return [
            dict(zip(("id", "status", "availability"), row.split(), strict=True))
            for row in rows
            if row.strip()
        ]

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            nodes = self.nodes()
            return len(nodes) == 2 and all(n["status"] == "Ready" for n in nodes)

        wait_until(ready, timeout=timeout, message="both swarm nodes to be ready", interval=0.2)

    def check_healthy(self, timeout: float = 30) -> str | None:
        """Before a test: both daemons running and both nodes ready, waiting up to ``timeout``
        for a node that missed heartbeats to come back. None when healthy at once; a line saying
        what was wrong when it recovered; raises :class:`SwarmBroken` (the daemons' state and
        their logs' last lines) when it did not, so that a broken swarm names itself instead of
        failing every later test in its own way."""
        dead = [name for name, e in self.engines() if not e.running]
        if dead:
            raise SwarmBroken(f"dockerd of the swarm's {' and '.join(dead)} exited", self)
        try:
            if len(seen := self.nodes()) == 2 and all(n["status"] == "Ready" for n in seen):
                return None
            self.wait_ready(timeout)
        except Exception as exc:
            raise SwarmBroken(f"swarm nodes not ready in {timeout:g}s ({exc})", self) from exc
        return f"swarm nodes were {seen}, ready again"

    def rebuild(self) -> None:
        """A new swarm in place of a broken one: both daemons removed, two new ones joined."""
        self.remove()
        self.manager, self.worker = ExtraEngine(), ExtraEngine()
        self.manager_addr = f"127.0.0.1:{free_port()}"
        self.worker_addr = f"127.0.0.1:{free_port()}"
        self.start()

    def engines(self) -> list[tuple[str, ExtraEngine]]:
        return [("manager", self.manager), ("worker", self.worker)]

    def node_of(self, url: str) -> str:
        return docker(url, "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()

    def services(self) -> list[str]:
        return [s for s in docker(self.manager.url, "service", "ls", "-q").stdout.split() if s]

    def service_state(self, label: str) -> list[dict[str, Any]]:
        """What a failing test shows of the services labelled ``label``: each one's replicas now
        and before its last update, the update's state, its version and its tasks."""
        out = []
        ids = docker(self.manager.url, "service", "ls", "-q", "--filter", f"label={label}")
        for sid in ids.stdout.split():
            raw = docker(self.manager.url, "service", "inspect", sid, check=False).stdout
            tasks = docker(
                self.manager.url,
                "service",
                "ps",
                sid,
                "--no-trunc",
                "--format",
                "{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
                check=False,
            ).stdout.splitlines()
            service = (json.loads(raw) or [{}])[0] if raw.strip() else {}
            out.append(
                {
                    "id": sid,
                    "version": service.get("Version"),
                    "updated": service.get("UpdatedAt"),
                    "mode": service.get("Spec", {}).get("Mode"),
                    "previous_mode": (service.get("PreviousSpec") or {}).get("Mode"),
                    "update_status": service.get("UpdateStatus"),
                    "force_update": service.get("Spec", {})
                    .get("TaskTemplate", {})
                    .get("ForceUpdate"),
                    "tasks": tasks,
                }
            )
        return out

    def remove_services(self, label: str) -> None:
        ids = docker(self.manager.url, "service", "ls", "-q", "--filter", f"label={label}")
        if ids.stdout.split():
            docker(self.manager.url, "service", "rm", *ids.stdout.split(), check=False)

    def revive_worker(self) -> None:
        """Start a worker whose daemon was killed: it stops the containers it left running
        (no live-restore) and rejoins the swarm by itself."""
        self.worker.start()
        self.wait_ready(timeout=120)

    def remove(self) -> None:
        """Both engines gone, stopped side by side. Neither leaves the swarm first: their state
        is deleted with them, and ``swarm leave --force`` waits seconds on the other node for
        nothing."""
        with ThreadPoolExecutor(2) as pool:
            for stopped in [pool.submit(engine.stop) for engine in (self.worker, self.manager)]:
                with contextlib.suppress(Exception):
                    stopped.result()
        for engine in (self.worker, self.manager):
            engine.remove()


@contextlib.contextmanager
def running_swarm() -> Iterator[Swarm]:
    swarm = Swarm()
    try:
        swarm.start()
        yield swarm
    finally:
        swarm.remove()
