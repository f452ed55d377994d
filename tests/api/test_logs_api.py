"""A bot's container logs through the API, from a real container on the real Docker Engine:
a printed line is readable within a second, a follow sees new lines, a gone container is a 404
that says so, an unreachable engine a 503, bad input a 422 naming the field."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from botfleet.auth import hash_token
from botfleet.config import Settings
from botfleet.store.models import Bot
from tests.conftest import TEST_TOKEN
from tests.servers import free_port, live_server
from tests.support.store import Store
from tests.support.wait import wait_until

ADMIN = {"Authorization": f"Bearer {TEST_TOKEN}"}
# Prints one line on each stream, then a numbered tick five times a second.
PRINTER = [
    "sh",
    "-c",
    "echo hello-out; echo hello-err >&2; i=0; "
    "while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
]
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.docker
@sqlite_only
def test_logs_tail_follow_and_gone(
    settings_factory: Callable[..., Settings],
    sample_image: str,
    docker_client: Any,
    cleanup_containers: None,
) -> None:
    port = free_port()
    settings = settings_factory(port=port, main_server_url=f"http://127.0.0.1:{port}")
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        started = time.monotonic()
        bot = http.post(
            "/bots",
            headers=ADMIN,
            json={"name": "printer", "image": sample_image, "command": PRINTER},
        ).json()
        path = f"/bots/{bot['id']}/logs"

        def tail(**params: Any) -> list[dict[str, Any]]:
            answer = http.get(path, headers=ADMIN, params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["total"] == len(body["items"]) and body["next_cursor"] is None
            return list(body["items"])

        lines = wait_until(
            lambda: (found := tail()) and any(x["line"] == "hello-err" for x in found) and found,
            timeout=10,
            message="the first lines",
            interval=0.05,
        )
        assert time.monotonic() - started < 10
        by_text = {x["line"]: x for x in lines}
        assert by_text["hello-out"]["stream"] == "stdout"
        assert by_text["hello-err"]["stream"] == "stderr"
        stamp = datetime.fromisoformat(by_text["hello-out"]["at"])
        assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)

        # A line printed now is readable within a second.
        def newest_tick() -> int:
            ticks = [
                int(x["line"].split()[1]) for x in tail(tail=5) if x["line"].startswith("tick")
            ]
            return max(ticks, default=0)

        before = newest_tick()
        seen_at = time.monotonic()
        wait_until(lambda: newest_tick() > before, timeout=1.0, message="a new line", interval=0.05)
        assert time.monotonic() - seen_at <= 1.0

        assert len(tail(tail=3)) == 3
        assert tail(tail=0) == []
        later = datetime.now(UTC) + timedelta(hours=1)
        assert tail(since=later.isoformat()) == []

        # Follow: server-sent events with lines printed after it began.
        last = newest_tick()
        with http.stream(
            "GET", path, headers=ADMIN, params={"follow": "true", "tail": 0}
        ) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            fresh = []
            event = ""
            for raw in answer.iter_lines():
                if raw.startswith("event:"):
                    event = raw.split(":", 1)[1].strip()
                elif raw.startswith("data:") and event == "line":
                    item = json.loads(raw.split(":", 1)[1])
                    if item["line"].startswith("tick"):
                        fresh.append(int(item["line"].split()[1]))
                    if len(fresh) >= 3:
                        break
            assert fresh and min(fresh) > last - 1 and fresh == sorted(fresh)

        # The container removed by hand: 404, saying why.
        docker_client.containers.get(bot["container_id"]).remove(force=True)
        gone = http.get(path, headers=ADMIN)
        assert gone.status_code == 404, gone.text
        assert "no longer exists" in gone.json()["detail"]
        assert bot["container_id"][:12] in gone.json()["detail"]
        followed = http.get(path, headers=ADMIN, params={"follow": "true"})
        assert followed.status_code == 404


@pytest.mark.docker
@sqlite_only
def test_follow_ends_when_the_container_stops(
    settings_factory: Callable[..., Settings],
    sample_image: str,
    cleanup_containers: None,
) -> None:
    port = free_port()
    settings = settings_factory(port=port, main_server_url=f"http://127.0.0.1:{port}")
    command = ["sh", "-c", "echo first; sleep 1; echo last"]
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        bot = http.post(
            "/bots",
            headers=ADMIN,
            json={"name": "brief", "image": sample_image, "command": command},
        ).json()
        with http.stream(
            "GET", f"/bots/{bot['id']}/logs", headers=ADMIN, params={"follow": "true"}
        ) as answer:
            text = "".join(answer.iter_text())
        assert '"line":"first"' in text and '"line":"last"' in text
        assert text.rstrip().endswith('data: {"reason": "the container stopped"}')


async def _bot_row(settings: Settings, **values: Any) -> uuid.UUID:
    store = Store(settings)
    bot_id = uuid.uuid4()
    try:
        async with store.sessions() as session, session.begin():
            session.add(
                Bot(
                    id=bot_id,
                    name=f"n{bot_id.hex[:8]}",
                    image="x",
                    token_hash=hash_token(bot_id.hex),
                    **values,
                )
            )
    finally:
        await store.close()
    return bot_id


@sqlite_only
async def test_unreachable_engine_is_503_and_no_container_is_404(
    settings_factory: Callable[..., Settings], tmp_path: Any
) -> None:
    from tests.conftest import started_app

    dead = f"unix://{tmp_path}/nobody.sock"
    settings = settings_factory(docker_hosts=dead)
    on_dead = await _bot_row(settings, engine=dead, container_id="c" * 64, status="running")
    never_ran = await _bot_row(settings, engine=dead, container_id=None, status="pending")
    app, ctx = await started_app(settings)
    try:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for follow in ("false", "true"):
                answer = await client.get(
                    f"/bots/{on_dead}/logs", headers=ADMIN, params={"follow": follow}
                )
                assert answer.status_code == 503, answer.text
                assert dead in answer.json()["detail"]
            answer = await client.get(f"/bots/{never_ran}/logs", headers=ADMIN)
            assert answer.status_code == 404
            assert "has no container" in answer.json()["detail"]
            answer = await client.get(f"/bots/{uuid.uuid4()}/logs", headers=ADMIN)
            assert answer.status_code == 404 and "not found" in answer.json()["detail"]

            for params, field in [
                ({"tail": -1}, "tail"),
                ({"tail": 10_001}, "tail"),
                ({"tail": "many"}, "tail"),
                ({"since": "yesterday-ish"}, "since"),
                ({"follow": "perhaps"}, "follow"),
            ]:
                answer = await client.get(f"/bots/{on_dead}/logs", headers=ADMIN, params=params)
                assert answer.status_code == 422, (params, answer.text)
                assert [e["field"] for e in answer.json()["errors"]] == [field]
                assert answer.json()["detail"].startswith(field)
    finally:
        await ctx.__aexit__(None, None, None)
