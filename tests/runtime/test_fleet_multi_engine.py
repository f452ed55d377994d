"""Several engines (DOCKER_HOSTS): two dockerds of the test's own, placement, engines going away.

The main daemon is never stopped: both engines here are throw-away daemons (tests/engines.py).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from botfleet.config import Settings
from botfleet.constants import LABEL_INSTANCE
from botfleet.errors import NoEngineAvailable
from botfleet.runtime.docker import DockerEngine
from botfleet.runtime.fleet import Fleet
from tests.conftest import TEST_TOKEN, started_app
from tests.engines import ExtraEngine

ADMIN = {"Authorization": f"Bearer {TEST_TOKEN}"}

pytestmark = pytest.mark.docker


def bot_body(name: str) -> dict[str, Any]:
    return {"name": name, "image": "botfleet/sample-bot:latest", "command": ["sleep", "600"]}


def containers_of(engine: ExtraEngine, instance: str) -> list[Any]:
    with engine.client() as client:
        found: list[Any] = client.containers.list(
            all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"}
        )
        return found


async def test_bots_spread_over_engines_and_avoid_stopped_ones(
    settings_factory: Callable[..., Settings],
    engine_factory: Callable[[], ExtraEngine],
    instance: str,
) -> None:
    one, two = engine_factory(), engine_factory()
    settings = settings_factory(docker_hosts=f"{one.url},{two.url}")
    app, ctx = await started_app(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as api:
            # Six bots spread 3/3, each recording its engine.
            placed = []
            for i in range(6):
                answer = await api.post("/bots", headers=ADMIN, json=bot_body(f"spread-{i}"))
                assert answer.status_code == 201, answer.text
                placed.append(answer.json()["engine"])
            assert collections.Counter(placed) == {one.url: 3, two.url: 3}
            assert len(containers_of(one, instance)) == len(containers_of(two, instance)) == 3

            # One engine stopped: new bots go to the other, although it has more bots now.
            two.stop()
            for i in range(2):
                answer = await api.post("/bots", headers=ADMIN, json=bot_body(f"survivor-{i}"))
                assert answer.status_code == 201, answer.text
                assert answer.json()["engine"] == one.url

            # Both stopped: 503 naming the engines, and nothing left behind.
            one.stop()
            answer = await api.post("/bots", headers=ADMIN, json=bot_body("stranded"))
            assert answer.status_code == 503
            assert one.url in answer.json()["detail"] and two.url in answer.json()["detail"]
            listed = await api.get("/bots", headers=ADMIN, params={"include_deleted": True})
            assert listed.json()["total"] == 8
            assert "stranded" not in {b["name"] for b in listed.json()["items"]}

            # Back up: the stranded bot never reached either engine.
            one.start()
            two.start()
            names = {c.name for e in (one, two) for c in containers_of(e, instance)}
            assert len(names) == 8
            by_engine = collections.Counter(b["engine"] for b in listed.json()["items"])
            assert by_engine == {one.url: 5, two.url: 3}
    finally:
        await ctx.__aexit__(None, None, None)


async def test_placement_prefers_the_least_loaded_reachable_engine(
    engine_factory: Callable[[], ExtraEngine],
) -> None:
    one = engine_factory()
    missing = "unix:///tmp/bf-missing-engine.sock"
    fleet = Fleet([DockerEngine(one.url), DockerEngine(missing)])
    try:
        assert (await fleet.place({one.url: 10, missing: 0})).name == one.url
        up, reasons = await fleet.reachable()
        assert up == [one.url]
        assert len(reasons) == 1 and missing in reasons[0]
        one.stop()
        with pytest.raises(NoEngineAvailable) as raised:
            await fleet.place({})
        assert one.url in str(raised.value) and missing in str(raised.value)
        one.start()
        assert (await fleet.place({})).name == one.url  # a restarted engine is used again
    finally:
        await fleet.close()
