"""Liveness and readiness through the real ASGI app, on both backends."""

from __future__ import annotations

import httpx


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok"}


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    answer = await client.get("/no-such-thing")
    assert answer.status_code == 404
    assert "detail" in answer.json()
