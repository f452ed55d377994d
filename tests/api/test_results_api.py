"""Results through the real API: posted by the bot's own container, read by the operator.

The headline test runs a real server in a thread and the sample bot on the real Docker Engine
(network_mode host), on both SQLite and PostgreSQL: the results arrive because the container
posts them, with the token botfleet gave it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from botfleet.config import Settings
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from tests.conftest import TEST_TOKEN
from tests.servers import free_port, live_server
from tests.support.wait import wait_until

ADMIN = {"Authorization": f"Bearer {TEST_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.docker
def test_bot_lifecycle_with_results_posted_by_its_container(
    settings_factory: Callable[..., Settings],
    sample_image: str,
    docker_client: Any,
    instance: str,
    cleanup_containers: None,
) -> None:
    port = free_port()
    settings = settings_factory(port=port, main_server_url=f"http://127.0.0.1:{port}")
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        created = http.post(
            "/bots",
            headers=ADMIN,
            json={"name": "poster", "image": sample_image, "env": {"RESULT_INTERVAL_SECONDS": "1"}},
        )
        assert created.status_code == 201, created.text
        bot = created.json()
        other = http.post(
            "/bots",
            headers=ADMIN,
            json={"name": "other", "image": sample_image, "command": ["sleep", "600"]},
        ).json()

        # A running container with the three labels.
        container = docker_client.containers.get(bot["container_id"])
        assert container.status == "running"
        assert container.labels[LABEL_MANAGED] == "true"
        assert container.labels[LABEL_BOT_ID] == bot["id"]
        assert container.labels[LABEL_INSTANCE] == instance
        assert bot["status"] == "running"

        # Its results arrive, posted by the container itself.
        def results() -> dict[str, Any]:
            answer = http.get(f"/bots/{bot['id']}/results", headers=ADMIN)
            assert answer.status_code == 200
            body: dict[str, Any] = answer.json()
            return body

        page = wait_until(
            lambda: results()["total"] >= 2 and results(),
            timeout=30,
            message="results",
            interval=0.1,
        )
        assert page["items"][0]["data"]["seq"] > page["items"][1]["data"]["seq"]  # newest first
        assert {item["bot_id"] for item in page["items"]} == {bot["id"]}

        # Another bot's token is refused.
        forbidden = http.post(
            f"/bots/{bot['id']}/results", headers=bearer(other["token"]), json={"data": 1}
        )
        assert forbidden.status_code == 403

        # Delete: deleted_at set, container stopped and kept, posting answers 410.
        deleted = http.delete(f"/bots/{bot['id']}", headers=ADMIN)
        assert deleted.status_code == 200
        assert deleted.json()["deleted_at"] is not None
        container.reload()
        assert container.status == "exited"
        assert http.get(f"/bots/{bot['id']}", headers=ADMIN).json()["deleted_at"] is not None
        gone = http.post(
            f"/bots/{bot['id']}/results", headers=bearer(bot["token"]), json={"data": 1}
        )
        assert gone.status_code == 410

        # Restore: running again, on the same container, and posting again.
        before = results()["total"]
        restored = http.post(f"/bots/{bot['id']}/restore", headers=ADMIN)
        assert restored.status_code == 200, restored.text
        assert restored.json()["deleted_at"] is None
        assert restored.json()["status"] == "running"
        assert restored.json()["token"] is None  # same container, same token
        container.reload()
        assert container.status == "running"
        wait_until(
            lambda: results()["total"] > before,
            timeout=30,
            message="results after restore",
            interval=0.1,
        )


async def test_post_results_auth_and_validation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "a")
    _other_id, other_token = await insert_bot(settings, "b")
    url = f"/bots/{bot_id}/results"

    missing = await client.post(url, json={"data": 1})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    garbage = await client.post(url, json={"data": 1}, headers=bearer("nobodys-token"))
    assert garbage.status_code == 401
    assert garbage.headers["www-authenticate"] == "Bearer"
    assert (
        await client.post(url, json={"data": 1}, headers=bearer(other_token))
    ).status_code == 403
    admin = await client.post(url, json={"data": 1}, headers=ADMIN)
    assert admin.status_code == 403
    assert "admin token" in admin.json()["detail"]

    ok = await client.post(url, json={"data": {"any": ["json", 1, None]}}, headers=bearer(token))
    assert ok.status_code == 201
    assert ok.json() == {"accepted": 1}
    batch = [{"data": i} for i in range(1000)]
    ok = await client.post(url, json=batch, headers=bearer(token))
    assert ok.status_code == 201
    assert ok.json() == {"accepted": 1000}
    null = await client.post(url, json={"data": None}, headers=bearer(token))
    assert null.status_code == 201

    for body, field in [
        ([{"data": i} for i in range(1001)], "body"),
        ([], "body"),
        ({"value": 1}, "data"),
        ({"data": 1, "extra": 2}, "extra"),
    ]:
        bad = await client.post(url, json=body, headers=bearer(token))
        assert bad.status_code == 422, body
        assert field in str(bad.json()["detail"]), bad.json()
    assert (await client.post("/bots/not-a-uuid/results", json={"data": 1})).status_code == 422
    unknown = "00000000-0000-0000-0000-000000000000"
    answer = await client.post(f"/bots/{unknown}/results", json={"data": 1}, headers=bearer(token))
    assert answer.status_code == 404

    listed = await client.get(url, headers=ADMIN, params={"limit": 10})
    assert listed.json()["total"] == 1002
    assert listed.json()["items"][0]["data"] is None  # newest first
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=bearer(token))).status_code == 401


async def test_results_pagination_by_cursor_and_offset(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "pager")
    url = f"/bots/{bot_id}/results"
    await client.post(url, json=[{"data": i} for i in range(25)], headers=bearer(token))
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(url, headers=ADMIN, params=params)).json()
        assert page["total"] == 25
        seen += [item["data"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(24, -1, -1))
    by_offset = (await client.get(url, headers=ADMIN, params={"limit": 5, "offset": 20})).json()
    assert [i["data"] for i in by_offset["items"]] == [4, 3, 2, 1, 0]
    assert by_offset["next_cursor"] is None
    # With both, the offset counts from the cursor's position (page 2 of 5 after the first 10).
    first = (await client.get(url, headers=ADMIN, params={"limit": 10})).json()
    params = {"limit": 5, "offset": 5, "cursor": first["next_cursor"]}
    after = (await client.get(url, headers=ADMIN, params=params)).json()
    assert [i["data"] for i in after["items"]] == [9, 8, 7, 6, 5]
    for params in ({"cursor": "nonsense"}, {"cursor": ""}, {"limit": 0}):
        bad = await client.get(url, headers=ADMIN, params=params)
        assert bad.status_code == 422, params
        assert next(iter(params)) in str(bad.json()["detail"])


async def test_deleted_bot_results_answer_410_only_to_its_own_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "ghost", deleted=True)
    _, other = await insert_bot(settings, "living")
    url = f"/bots/{bot_id}/results"
    gone = await client.post(url, json={"data": 1}, headers=bearer(token))
    assert gone.status_code == 410
    assert (await client.post(url, json={"data": 1}, headers=bearer(other))).status_code == 403
    # Still readable by the operator.
    assert (await client.get(url, headers=ADMIN)).json()["total"] == 0


@pytest.mark.parametrize(
    "data",
    [
        None,
        0,
        -1.5,
        "text",
        "",
        True,
        [],
        {},
        [1, "two", None],
        {"nested": {"a": [1, {"b": None}]}},
    ],
)
async def test_any_json_round_trips(
    client: httpx.AsyncClient, settings: Settings, data: Any
) -> None:
    from tests.test_bots import insert_bot

    bot_id, token = await insert_bot(settings, "echo")
    url = f"/bots/{bot_id}/results"
    for body in ({"data": data}, [{"data": data}, {"data": data}]):  # single and batched paths
        answer = await client.post(url, json=body, headers=bearer(token))
        assert answer.status_code == 201, answer.text
    stored = (await client.get(url, headers=ADMIN)).json()["items"]
    assert [item["data"] for item in stored] == [data, data, data]
