"""The Docker adapter against the real engine: labels, states, stop-and-keep, scoping, failures."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.errors import ContainerFailed, EngineUnavailable, ImageNotAvailable
from botfleet.runtime.base import ContainerEngine, ContainerSpec, EventSource
from botfleet.runtime.docker import ContainerConflict, DockerEngine, parse_docker_time

pytestmark = pytest.mark.docker


def spec(instance: str, command: list[str] | None = None, **overrides: Any) -> ContainerSpec:
    bot_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "name": f"botfleet-{bot_id}",
        "image": "botfleet/sample-bot:latest",
        "command": command or ["sleep", "600"],
        "env": {"BOT_ID": bot_id},
        "labels": {LABEL_MANAGED: "true", LABEL_BOT_ID: bot_id, LABEL_INSTANCE: instance},
        "network": "none",
    }
    values.update(overrides)
    return ContainerSpec(**values)


@pytest.fixture
async def engine(docker_client: Any, sample_image: str) -> Any:
    engine = DockerEngine()
    yield engine
    await engine.close()


async def test_run_inspect_stop_keep_remove(
    engine: DockerEngine, instance: str, docker_client: Any, cleanup_containers: None
) -> None:
    assert isinstance(engine, ContainerEngine) and isinstance(engine, EventSource)
    info = await engine.run(spec(instance))
    assert info.state == "running" and info.engine == "local"
    assert info.belongs_to(instance) and not info.belongs_to("someone-else")
    raw = docker_client.containers.get(info.id).attrs
    assert raw["HostConfig"]["NetworkMode"] == "none"
    assert raw["HostConfig"]["Init"] is True

    started = time.monotonic()
    await engine.stop(info.id, timeout=10)
    assert time.monotonic() - started < 5  # docker-init passes SIGTERM on: no 10 s wait
    stopped = await engine.inspect(info.id)
    assert stopped is not None and stopped.state == "exited" and stopped.exit_code == 143
    await engine.stop(info.id)  # already stopped: fine
    await engine.start(info.id)
    assert (await engine.inspect(info.id)).state == "running"  # type: ignore[union-attr]
    with pytest.raises(ContainerConflict):
        await engine.remove(info.id)  # never forced
    await engine.stop(info.id)
    await engine.remove(info.id)
    assert await engine.inspect(info.id) is None
    await engine.remove(info.id)  # gone already: fine
    await engine.stop(info.id)


async def test_list_managed_sees_only_this_instance(
    engine: DockerEngine, instance: str, docker_client: Any, cleanup_containers: None
) -> None:
    mine = await engine.run(spec(instance, command=["sh", "-c", "exit 3"]))
    other_instance = f"{instance}x"
    theirs = await engine.run(spec(other_instance))
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = {c.id: c for c in await engine.list_managed(instance)}
            if listed[mine.id].state == "exited" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert set(listed) == {mine.id}
        assert listed[mine.id].exit_code == 3  # read from the summary, no inspect needed
        assert listed[mine.id].created_at is not None
    finally:
        docker_client.containers.get(theirs.id).remove(force=True)


async def test_failures_leave_no_container(
    engine: DockerEngine, instance: str, docker_client: Any, cleanup_containers: None
) -> None:
    with pytest.raises(ImageNotAvailable):
        await engine.run(spec(instance, image="botfleet/not-there:0"))
    with pytest.raises(ContainerFailed):
        await engine.run(spec(instance, network="no-such-network"))
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})
        == []
    )


async def test_an_unreachable_engine_raises_engine_unavailable() -> None:
    engine = DockerEngine("unix:///tmp/bf-no-engine.sock")
    try:
        for call in (engine.ping(), engine.list_managed("x"), engine.inspect("abc")):
            with pytest.raises(EngineUnavailable) as raised:
                await call
            assert "bf-no-engine.sock" in str(raised.value)
        with pytest.raises(EngineUnavailable):
            engine.open_events("x")
    finally:
        await engine.close()


async def test_event_stream_reports_and_closes(
    engine: DockerEngine, instance: str, cleanup_containers: None
) -> None:
    stream = engine.open_events(instance)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(str(e.get("status")) for e in stream))
    reader.start()
    info = await engine.run(spec(instance))
    await engine.stop(info.id)
    deadline = time.monotonic() + 30
    while "die" not in seen and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stream.close()
    reader.join(10)
    assert not reader.is_alive()
    assert "start" in seen and "die" in seen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05.5+02:00", datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_docker_time(text: str | None, expected: datetime | None) -> None:
    assert parse_docker_time(text) == expected


async def test_calls_about_many_containers_share_one_connection_pool(engine: Any) -> None:
    """docker-py would open a pool (and a socket) per container path; ours keeps one."""
    for _ in range(5):
        assert await engine.inspect(uuid.uuid4().hex) is None  # five distinct URLs
    await engine.list_managed("nobody")
    adapter = engine._connect().api.adapters["http+docker://"]
    assert len(adapter.pools) == 1
