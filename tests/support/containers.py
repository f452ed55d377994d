"""Containers on the Docker Engine, made and read with the docker SDK — never through the app:
orphans made straight on the engine (the bot lifecycle is not needed to make them), what the
engine says about containers, and its event stream as a witness of what was done to them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import pytest

from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from tests.support.wait import wait_until

# Event actions that would harm a container someone else owns.
DESTRUCTIVE = frozenset({"destroy", "die", "kill", "stop"})


def labels_for(instance: str, bot_id: uuid.UUID | str | None = None) -> dict[str, str]:
    """This instance's three labels, naming ``bot_id`` (a fresh one by default)."""
    return {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: instance,
        LABEL_BOT_ID: str(bot_id or uuid.uuid4()),
    }


def docker_time(value: str) -> datetime:
    from botfleet.runtime.docker import parse_docker_time

    parsed = parse_docker_time(value)
    assert parsed is not None
    return parsed


def container_state(client: Any, container_id: str) -> str | None:
    """The engine's word on a container's state (None: it is gone)."""
    from docker.errors import NotFound

    try:
        return str(client.api.inspect_container(container_id)["State"]["Status"])
    except NotFound:
        return None


def containers_of(client: Any, instance: str) -> dict[str, dict[str, Any]]:
    """Every container carrying ``botfleet.instance=<instance>`` (any state): id → facts."""
    rows = client.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
    return {r["Id"]: {"name": r["Names"][0].lstrip("/"), "state": r["State"]} for r in rows}


def container_digest(client: Any, ids: Iterable[str]) -> str:
    """A hash of what the engine says about these containers (state, labels, name, exit)."""
    h = hashlib.sha256()
    for cid in sorted(ids):
        state = container_state(client, cid)
        if state is None:
            h.update(f"{cid}:gone".encode())
            continue
        raw = client.api.inspect_container(cid)
        facts = [cid, raw["Name"], state, raw["State"]["FinishedAt"], raw["Config"]["Labels"]]
        h.update(json.dumps(facts, sort_keys=True).encode())
    return h.hexdigest()


class Containers:
    """Containers made straight with the docker SDK (network none), removed at teardown."""

    def __init__(self, client: Any, image: str) -> None:
        self.client = client
        self.image = image
        self.ids: list[str] = []

    def make(self, state: str, labels: dict[str, str] | None = None) -> str:
        """``created`` (never started), ``running`` (sleeps) or ``exited`` (ran ``true``)."""
        command = ["sleep", "600"] if state == "running" else ["true"]
        container = self.client.containers.create(
            self.image, command=command, labels=labels or {}, network_mode="none", detach=True
        )
        self.ids.append(container.id)
        if state != "created":
            container.start()
            wanted = "running" if state == "running" else "exited"
            wait_until(
                lambda: self.state(container.id) == wanted,
                timeout=30,
                message=f"a {state} container",
            )
        return str(container.id)

    def named(self, name: str, labels: dict[str, str] | None = None) -> str:
        """A never-started container with a name of the test's choosing."""
        made = self.client.containers.create(
            self.image, command=["true"], name=name, labels=labels or {}, network_mode="none"
        )
        self.ids.append(made.id)
        return str(made.id)

    def state(self, container_id: str) -> str | None:
        return container_state(self.client, container_id)

    def inspect(self, container_id: str) -> dict[str, Any]:
        return dict(self.client.api.inspect_container(container_id))

    def snapshot(self) -> dict[str, str | None]:
        """Every container this test made, and its state (None: removed)."""
        return {cid: self.state(cid) for cid in self.ids}

    def remove_all(self) -> None:
        from docker.errors import NotFound

        for cid in self.ids:
            with contextlib.suppress(NotFound):
                self.client.api.remove_container(cid, force=True)


@pytest.fixture
def containers(docker_client: Any, sample_image: str) -> Iterator[Containers]:
    made = Containers(docker_client, sample_image)
    try:
        yield made
    finally:
        made.remove_all()


class EventLog:
    """The engine's container events, read live by a thread of its own from ``start()`` on.

    Live, because the engine keeps only its last 256 events for a ``since`` query, and other
    tests share it. ``stop()`` first waits for a marker event of its own: every event before
    it has been read by then (the stream is ordered).
    """

    def __init__(self, image: str) -> None:
        import docker

        self.image = image
        self.client = docker.from_env()
        self.events: list[dict[str, Any]] = []
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> EventLog:
        self._stream = self.client.events(decode=True, filters={"type": "container"})
        self._thread = threading.Thread(target=self._read, name="event-log", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when stop() closes it
            for event in self._stream:
                self.events.append(event)

    def stop(self, timeout: float = 30) -> None:
        marker = self.client.containers.create(self.image, command=["true"], network_mode="none")
        marker.remove()
        wait_until(
            lambda: any(_id(e) == marker.id and _action(e) == "destroy" for e in self.events),
            timeout=timeout,
            message="the marker's destroy event (the engine's event stream fell silent)",
            interval=0.02,
        )
        self.close()

    def close(self) -> None:
        """End the stream (at once; ``stop()`` waits for the last events first). Idempotent."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.client.close()

    def actions(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        """(container id, action) of every event recorded for ``ids``, in order."""
        wanted = set(ids)
        return [(_id(e), _action(e)) for e in list(self.events) if _id(e) in wanted]


def _id(event: dict[str, Any]) -> str:
    return str(event.get("id") or event.get("Actor", {}).get("ID") or "")


def _action(event: dict[str, Any]) -> str:
    return str(event.get("Action") or event.get("status") or "")
