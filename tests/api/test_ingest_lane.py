"""The result ingest's fast lane: accepted posts skip the framework, every refusal is the route's.

On PostgreSQL an accepted post is stored by ``api/ingest_lane.py`` (one statement that checks the
token and inserts); these tests hold it to the documented route's contract, and show which of the
two answered by counting the route's own calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from botfleet.api.ingest_lane import storable_items
from botfleet.config import Settings
from botfleet.constants import MAX_RESULTS_PER_POST
from botfleet.results import ResultService
from tests.conftest import TEST_TOKEN, postgres_only

ADMIN = {"Authorization": f"Bearer {TEST_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many posts reached the documented route (``ResultService.ingest``)."""
    calls: list[int] = []
    original = ResultService.ingest

    async def counted(self: ResultService, *args: Any, **kwargs: Any) -> int:
        calls.append(1)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(ResultService, "ingest", counted)
    yield calls


@pytest.mark.parametrize(
    ("body", "items"),
    [
        ({"data": 1}, [1]),
        ({"data": None}, [None]),
        ([{"data": {"a": [1]}}, {"data": "x"}], [{"a": [1]}, "x"]),
        ({"data": 1, "extra": 2}, None),
        ({"value": 1}, None),
        ([], None),
        ([{"data": i} for i in range(MAX_RESULTS_PER_POST + 1)], None),
        ([{"data": 1}, 2], None),
        ({"data": float("nan")}, None),
        ({"data": 2**63}, None),
        ({"data": {"k": "nul\x00"}}, None),
        ("text", None),
    ],
)
def test_only_bodies_of_the_documented_shape_take_the_lane(body: Any, items: Any) -> None:
    assert storable_items(body) == items


@postgres_only
async def test_accepted_posts_take_the_lane_and_refusals_the_route(
    client: httpx.AsyncClient, settings: Settings, route_calls: list[int]
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "fast")
    _, other = await insert_bot(settings, "other")
    url = f"/bots/{bot_id}/results"
    assert (await client.post(url, json={"data": 1}, headers=bearer(token))).json() == {
        "accepted": 1
    }
    batch = await client.post(url, json=[{"data": i} for i in range(1000)], headers=bearer(token))
    assert (batch.status_code, batch.json()) == (201, {"accepted": 1000})
    assert route_calls == []  # both stored by the lane
    assert (await client.post(url, json={"data": 1}, headers=bearer(other))).status_code == 403
    assert (await client.post(url, json={"data": 1}, headers=bearer("x"))).status_code == 401
    bad = await client.post(url, json={"data": 1, "extra": 2}, headers=bearer(token))
    assert bad.status_code == 422
    assert "extra" in str(bad.json())
    assert len(route_calls) == 2  # the 422 never reached the service
    # A chunked body (no declared length) is the route's to read and limit.

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"data": '
        yield b"7}"

    chunked = await client.post(
        url,
        content=chunks(),
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert chunked.status_code == 201
    assert len(route_calls) == 3
    listed = (await client.get(url, headers=ADMIN, params={"limit": 1})).json()
    assert listed["total"] == 1002
    assert listed["items"][0]["data"] == 7
    # The lane keeps the batch's order (ids follow the list).
    page = (await client.get(url, headers=ADMIN, params={"limit": 3, "offset": 1})).json()
    assert [item["data"] for item in page["items"]] == [999, 998, 997]


@postgres_only
async def test_a_deleted_bot_gets_410_on_its_next_post_after_many_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "short-lived")
    url = f"/bots/{bot_id}/results"
    for i in range(50):
        answer = await client.post(url, json={"data": i}, headers=bearer(token))
        assert answer.status_code == 201
    assert (await client.delete(f"/bots/{bot_id}", headers=ADMIN)).status_code in (200, 204)
    gone = await client.post(url, json={"data": "late"}, headers=bearer(token))
    assert gone.status_code == 410
    listed = (await client.get(url, headers=ADMIN, params={"limit": 1})).json()
    assert listed["total"] == 50


@postgres_only
async def test_a_rate_limited_address_is_refused_even_with_the_right_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "limited")
    url = f"/bots/{bot_id}/results"
    for _ in range(settings.auth_failure_limit):
        assert (await client.post(url, json={"data": 0}, headers=bearer("no"))).status_code == 401
    refused = await client.post(url, json={"data": 1}, headers=bearer(token))
    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert (await client.get(url, headers=ADMIN)).json()["total"] == 0


@postgres_only
async def test_the_lane_counts_in_the_http_metrics_under_the_route_template(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "counted")
    await client.post(f"/bots/{bot_id}/results", json={"data": 1}, headers=bearer(token))
    text = (await client.get("/metrics", headers=ADMIN)).text
    assert 'route="/bots/{bot_id}/results",status="201"' in text
    assert str(bot_id) not in text
