"""A swarm service's logs through the engine Protocol: the manager gathers its task's lines,
with timestamps and streams; a follow sees new ones; a removed service is WorkloadGone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from botfleet.constants import LABEL_INSTANCE
from botfleet.errors import WorkloadGone
from botfleet.runtime.log_stream import LogQuery
from botfleet.runtime.swarm import SwarmEngine
from tests.runtime.test_swarm_engine import spec, state_of
from tests.support.swarm import Swarm
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.docker
PRINTER = [
    "sh",
    "-c",
    "echo hello-out; echo hello-err >&2; i=0; "
    "while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
]


@pytest.fixture
async def engine(swarm: Swarm, instance: str) -> Any:
    engine = SwarmEngine([swarm.manager.url], restart="on-failure:2")
    yield engine
    swarm.remove_services(f"{LABEL_INSTANCE}={instance}")
    await engine.close()


async def test_service_logs_tail_follow_and_gone(
    engine: SwarmEngine, instance: str, registry_image: str
) -> None:
    info = await engine.run(spec(instance, registry_image, command=PRINTER))
    await state_of(engine, info.id, "running")

    async def tail() -> list[Any] | None:
        stream = await asyncio.to_thread(engine.open_logs, info.id, LogQuery(tail=None))
        try:
            lines = await asyncio.to_thread(list, stream)
        finally:
            stream.close()
        texts = {line.text for line in lines}
        return lines if {"hello-out", "hello-err"} <= texts else None

    lines = await wait_until_async(tail, timeout=30, message="the service's first lines")
    by_text = {line.text: line for line in lines}
    assert by_text["hello-out"].stream == "stdout" and by_text["hello-err"].stream == "stderr"
    assert by_text["hello-out"].at is not None

    stream = await asyncio.to_thread(engine.open_logs, info.id, LogQuery(tail=0, follow=True))
    try:
        lines_iter = iter(stream)
        fresh = [await asyncio.to_thread(next, lines_iter) for _ in range(3)]
    finally:
        stream.close()
    assert all(line.text.startswith("tick") for line in fresh)

    await engine.remove(info.id)
    with pytest.raises(WorkloadGone):
        await asyncio.to_thread(engine.open_logs, info.id, LogQuery())
