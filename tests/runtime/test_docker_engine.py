"""The Docker adapter against the real engine: labels, states, stop-and-keep, scoping, failures."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.errors import (
    ContainerConflict,
    ContainerFailed,
    EngineUnavailable,
    ImageNotAvailable,
)
from botfleet.runtime.base import ContainerEngine, ContainerSpec
from botfleet.runtime.docker import DockerEngine, parse_docker_time
from botfleet.runtime.log_stream import LogQuery
from tests.support.wait import wait_until_async

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


@pytest.fixture(params=["plain-http", "sdk"])
async def engine(request: pytest.FixtureRequest, docker_client: Any, sample_image: str) -> Any:
    """Both routes to the engine: plain HTTP for inspect/list/remove (the default on a unix
    socket or plain TCP) and the SDK for them (what TLS and ssh engines get)."""
    engine = DockerEngine(plain_http=request.param == "plain-http")
    yield engine
    await engine.close()


async def test_run_inspect_stop_keep_remove(
    engine: DockerEngine, instance: str, docker_client: Any, cleanup_containers: None
) -> None:
    assert isinstance(engine, ContainerEngine)
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

        async def exited() -> dict[str, Any] | None:
            listed = {c.id: c for c in await engine.list_managed(instance)}
            return listed if listed[mine.id].state == "exited" else None

        listed = await wait_until_async(
            exited, timeout=30, message="the list to show the container exited"
        )
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
    try:
        await wait_until_async(lambda: "die" in seen, timeout=30, message="the die event")
    finally:
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


async def test_calls_about_many_containers_share_one_connection_pool(
    docker_client: Any,
) -> None:
    """docker-py would open a pool (and a socket) per container path; ours keeps one."""
    engine = DockerEngine(plain_http=False)
    try:
        for _ in range(5):
            assert await engine.inspect(uuid.uuid4().hex) is None  # five distinct URLs
        await engine.list_managed("nobody")
        adapter = engine._connect().api.adapters["http+docker://"]
        assert len(adapter.pools) == 1
    finally:
        await engine.close()


async def test_plain_http_carries_the_per_container_calls(
    instance: str, docker_client: Any, sample_image: str, cleanup_containers: None
) -> None:
    """On a unix socket, inspect, list and remove go over plain HTTP, not docker-py."""
    engine = DockerEngine()
    try:
        info = await engine.run(spec(instance, command=["true"]))
        wire = engine._http
        assert wire is not None and wire.socket_path
        calls: list[str] = []
        real_request = wire.request

        def counting(method: str, path: str, params: Any = None) -> Any:
            calls.append(f"{method} {path.split('/')[1]}")
            return real_request(method, path, params)

        wire.request = counting  # type: ignore[method-assign]
        sdk = engine._connect().api
        sdk.get = sdk.delete = None  # any use of docker-py for these calls would fail
        try:
            await engine.list_managed(instance)
            await engine.inspect(info.id)
            await wait_exited(engine, info.id)
            await engine.remove(info.id)
        finally:
            del sdk.get, sdk.delete  # the class's methods again
        assert calls[:2] == ["GET containers", "GET containers"]
        assert calls[-1] == "DELETE containers"
        assert await engine.inspect(info.id) is None
    finally:
        await engine.close()


async def wait_exited(engine: DockerEngine, container_id: str) -> None:
    async def stopped() -> bool:
        found = await engine.inspect(container_id)
        return found is not None and found.state != "running"

    await wait_until_async(stopped, timeout=30, message=f"{container_id} to stop running")


async def test_remove_verified_removes_only_what_the_check_passes(
    engine: DockerEngine, instance: str, cleanup_containers: None
) -> None:
    """One call: inspect, ask, remove. A reason keeps the container; a running one is never
    removed even when the check would let it go (the engine refuses: never forced)."""
    kept = await engine.run(spec(instance, command=["true"]))
    running = await engine.run(spec(instance))
    await wait_exited(engine, kept.id)
    seen: list[str | None] = []

    def no(info: Any) -> str | None:
        seen.append(info.state if info else None)
        return "not today"

    assert await engine.remove_verified(kept.id, no) == "not today"
    assert seen == ["exited"]
    assert await engine.inspect(kept.id) is not None

    removed = await engine.remove_verified(kept.id, lambda info: None)
    assert not isinstance(removed, str) and removed.id == kept.id and removed.state == "exited"
    assert await engine.inspect(kept.id) is None
    assert await engine.remove_verified(kept.id, lambda info: None) == "already gone"

    with pytest.raises(ContainerConflict):
        await engine.remove_verified(running.id, lambda info: None)
    still = await engine.inspect(running.id)
    assert still is not None and still.state == "running"


@pytest.mark.parametrize("follow", [True, False])
async def test_a_closed_log_stream_hands_no_connection_back_to_the_pool(
    engine: DockerEngine, instance: str, cleanup_containers: None, follow: bool
) -> None:
    """Closing a log stream shuts its socket; had the stream already ended, its connection
    was back in the client's pool by then, and the next call on the engine got a dead socket
    (a 500 the fuzzer found: ``ValueError: file descriptor cannot be a negative integer``).
    A log stream's connection is its own: closed with it, never pooled."""
    info = await engine.run(spec(instance, ["sh", "-c", "echo one; echo two"]))

    async def exited() -> bool:
        found = await engine.inspect(info.id)
        return found is not None and found.state == "exited"

    await wait_until_async(exited, timeout=30, message="the container to exit")
    stream = engine.open_logs(info.id, LogQuery(tail=10, follow=follow))
    connection = stream._response.raw._connection
    assert [line.text for line in stream] == ["one", "two"]  # the engine ended the stream
    stream.close()
    assert connection.sock is None, "the stream's connection was left open, in the pool"
    again = engine.open_logs(info.id, LogQuery(tail=1))
    assert [line.text for line in again] == ["two"]
    again.close()
