"""Result ingest across processes: two replicas on two ports, and one server with two workers.

Real ``botfleet serve`` processes on one PostgreSQL database, the client round-robin between
them: no result is lost, and a bot deleted through one replica is refused (410) by the other on
its very next post — there is no cache of tokens to go stale (``result_writer.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from botfleet.config import Settings
from tests.reliability._serve import AUTH, Serve
from tests.support.wait import wait_until


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


async def post_round_robin(urls: list[str], bot_id: str, token: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(i: int) -> int:
            url = f"{urls[i % len(urls)]}/bots/{bot_id}/results"
            return (await client.post(url, json={"data": {"seq": i}}, headers=headers)).status_code

        return list(await asyncio.gather(*(post(i) for i in range(count))))


async def total(url: str, bot_id: str) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{url}/bots/{bot_id}/results", headers=AUTH, params={"limit": 1})
    return int(answer.json()["total"])


async def test_two_replicas_lose_nothing_and_a_delete_on_one_is_410_on_the_other(
    pg_factory: Callable[..., Settings], tmp_path: Path, servers: list[Serve]
) -> None:
    from tests.test_bots import insert_bot

    settings = pg_factory()
    env = {"DATABASE_URL": settings.database_url, "CLEANUP_ENABLED": "false"}
    servers += [Serve(tmp_path, **env), Serve(tmp_path, **env)]
    for server in servers:
        server.ready()
    urls = [server.url for server in servers]
    bot_id, token = await insert_bot(settings, "replicated")
    statuses = await post_round_robin(urls, str(bot_id), token, 400)
    assert statuses == [201] * 400
    assert await total(urls[0], str(bot_id)) == await total(urls[1], str(bot_id)) == 400
    for deleted_on, other in ((0, 1), (1, 0)):
        bot_id, token = await insert_bot(settings, f"deleted-on-{deleted_on}")
        assert await post_round_robin(urls, str(bot_id), token, 20) == [201] * 20
        async with httpx.AsyncClient(timeout=30) as client:
            deleted = await client.delete(f"{urls[deleted_on]}/bots/{bot_id}", headers=AUTH)
        assert deleted.status_code in (200, 204)
        gone = await post_round_robin([urls[other]], str(bot_id), token, 1)
        assert gone == [410]
        assert await total(urls[other], str(bot_id)) == 20


async def test_two_workers_share_a_port_and_run_one_set_of_background_loops(
    pg_factory: Callable[..., Settings], tmp_path: Path, servers: list[Serve]
) -> None:
    from tests.test_bots import insert_bot

    settings = pg_factory()
    env = {"DATABASE_URL": settings.database_url, "CLEANUP_ENABLED": "true"}
    server = Serve(tmp_path, "--workers", "2", **env)
    servers.append(server)
    server.ready()
    started = re.compile(r"Started server process \[(\d+)\]")
    wait_until(
        lambda: len(set(started.findall(server.log()))) == 2,
        timeout=60,
        message="both workers",
    )
    wait_until(
        lambda: "runs the background loops" in server.log(),
        timeout=30,
        message="a worker taking the background loops",
    )
    bot_id, token = await insert_bot(settings, "two-workers")
    # Fresh connections, so both workers take posts.
    statuses = await post_round_robin([server.url], str(bot_id), token, 300)
    assert statuses == [201] * 300
    assert await total(server.url, str(bot_id)) == 300
    assert server.log().count("runs the background loops") == 1
