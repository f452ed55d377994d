"""The bot endpoints through the real ASGI app, the real engine, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from botfleet.config import Settings
from botfleet.store.models import Bot
from botfleet.store.session import create_engine, create_session_factory
from tests.conftest import TEST_TOKEN, started_app
from tests.test_bots import insert_bot

ADMIN = {"Authorization": f"Bearer {TEST_TOKEN}"}
IMAGE = "botfleet/sample-bot:latest"


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"name": "b", "image": IMAGE, "command": ["sleep", "600"]}
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/bots"),
        ("GET", "/bots"),
        ("GET", "/bots/00000000-0000-0000-0000-000000000000"),
        ("DELETE", "/bots/00000000-0000-0000-0000-000000000000"),
        ("POST", "/bots/00000000-0000-0000-0000-000000000000/restore"),
        ("GET", "/bots/00000000-0000-0000-0000-000000000000/results"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
async def test_admin_endpoints_need_the_admin_token(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    answer = await client.request(method, path, headers=headers, json=body())
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"detail": "missing or invalid bearer token"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"image": ""}, "image"),
        ({"image": "UPPER/case"}, "image"),
        ({"image": "name with space"}, "image"),
        ({"image": "repo:tag:extra"}, "image"),
        ({"image": "a" * 256}, "image"),
        ({"command": "sleep 600"}, "command"),
        ({"command": ["ok", "x" * 4097]}, "command"),
        ({"command": ["a"] * 257}, "command"),
        ({"command": ["nul\x00"]}, "command"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"HAS-DASH": "x"}}, "env"),
        ({"env": {"BOT_TOKEN": "mine"}}, "env"),
        ({"env": {"A": "x" * 40000}}, "env"),
        ({"env": {"A": 1}}, "env"),
        ({"env": {f"K{i}": "v" for i in range(129)}}, "env"),
        ({"labels": {"Upper": "x"}}, "labels"),
        ({"labels": {"a..b": "x"}}, "labels"),
        ({"labels": {"botfleet.bot-id": "x"}}, "labels"),
        ({"labels": {"com.docker.thing": "x"}}, "labels"),
        ({"labels": {"team": "x" * 257}}, "labels"),
        ({"labels": {"team": "line\nbreak"}}, "labels"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_create_validation_names_the_field(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    answer = await client.post("/bots", headers=ADMIN, json=body(**overrides))
    assert answer.status_code == 422, answer.text
    refused = answer.json()
    # The one error shape: each refused field named in `errors`, and first in `detail`.
    assert any(e["field"].split(".")[0] == field for e in refused["errors"]), refused
    assert refused["detail"].startswith(f"{field}"), refused


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "botfleet/sample-bot:latest",
        "registry.example.com:5000/team/app:v1.2-rc_3",
        "localhost/app@sha256:" + "a" * 64,
        "app:latest@sha256:" + "0" * 64,
    ],
)
def test_plausible_image_references_are_accepted(image: str) -> None:
    from botfleet.api.schemas.bots import BotCreate

    assert BotCreate(name="n", image=image).image == image


async def test_missing_and_malformed_json(client: httpx.AsyncClient) -> None:
    for content in (b"", b"{not json", b"[]"):
        answer = await client.post(
            "/bots", headers={**ADMIN, "Content-Type": "application/json"}, content=content
        )
        assert answer.status_code == 422, content
        assert "detail" in answer.json()


async def test_bodies_over_one_mebibyte_get_413(client: httpx.AsyncClient) -> None:
    huge = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    answer = await client.post(
        "/bots", headers={**ADMIN, "Content-Type": "application/json"}, content=huge
    )
    assert answer.status_code == 413
    assert "larger than 1048576 bytes" in answer.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b" " * 65536

    streamed = await client.post(
        "/bots/00000000-0000-0000-0000-000000000000/results",
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        content=chunks(),
    )
    assert streamed.status_code == 413
    assert "detail" in streamed.json()


async def test_unknown_bot_is_404(client: httpx.AsyncClient) -> None:
    path = "/bots/00000000-0000-0000-0000-000000000000"
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/restore"), ("GET", "/results")):
        answer = await client.request(method, path + suffix, headers=ADMIN)
        assert answer.status_code == 404, (method, suffix)
        assert "not found" in answer.json()["detail"]
    assert (await client.get("/bots/nope", headers=ADMIN)).status_code == 422


async def test_list_answers_items_total_next_cursor(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        await insert_bot(
            settings,
            f"l{i}",
            labels={"team": "ops" if i < 3 else "dev"},
            created_at=base + timedelta(seconds=i),
        )
    await insert_bot(settings, "old", deleted=True, labels={"team": "ops"})

    page = (await client.get("/bots", headers=ADMIN, params={"limit": 2})).json()
    assert set(page) == {"items", "total", "next_cursor"}
    assert page["total"] == 5 and len(page["items"]) == 2 and page["next_cursor"]
    assert "token" not in page["items"][0] and "token_hash" not in page["items"][0]
    assert "env" not in page["items"][0]
    rest = (
        await client.get(
            "/bots", headers=ADMIN, params={"limit": 10, "cursor": page["next_cursor"]}
        )
    ).json()
    assert [b["name"] for b in rest["items"]] == ["l2", "l1", "l0"]
    assert rest["next_cursor"] is None

    ops = (await client.get("/bots", headers=ADMIN, params={"label": "team=ops"})).json()
    assert ops["total"] == 3
    ops_all = await client.get(
        "/bots", headers=ADMIN, params={"label": "team=ops", "include_deleted": "true"}
    )
    assert ops_all.json()["total"] == 4
    deleted = (await client.get("/bots", headers=ADMIN, params={"status": "deleted"})).json()
    assert [b["name"] for b in deleted["items"]] == ["old"]
    assert deleted["items"][0]["deleted_at"] is not None

    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "sleeping"}, "status"),
        ({"label": "no-equals"}, "label"),
        ({"label": 'quote"d=1'}, "label"),
        ({"include_deleted": "maybe"}, "include_deleted"),
        ({"cursor": "!!"}, "cursor"),
    ]:
        answer = await client.get("/bots", headers=ADMIN, params=params)
        assert answer.status_code == 422, params
        assert field in str(answer.json()["detail"]), answer.json()


@pytest.mark.docker
async def test_create_show_delete_restore(
    client: httpx.AsyncClient, settings: Settings, sample_image: str, cleanup_containers: None
) -> None:
    created = await client.post("/bots", headers=ADMIN, json=body(name="api", labels={"a": "b"}))
    assert created.status_code == 201, created.text
    bot = created.json()
    assert bot["token"] and bot["status"] == "running" and bot["engine"] == "local"
    assert bot["labels"] == {"a": "b"} and bot["deleted_at"] is None
    taken = await client.post("/bots", headers=ADMIN, json=body(name="api"))
    assert taken.status_code == 409
    assert "api" in taken.json()["detail"]

    shown = (await client.get(f"/bots/{bot['id']}", headers=ADMIN)).json()
    assert "token" not in shown and shown["container_id"] == bot["container_id"]

    first = await client.delete(f"/bots/{bot['id']}", headers=ADMIN)
    second = await client.delete(f"/bots/{bot['id']}", headers=ADMIN)
    assert first.status_code == second.status_code == 200
    assert first.json()["deleted_at"] == second.json()["deleted_at"] is not None
    assert second.json()["status"] == "deleted"
    # The name is free again once deleted.
    again = await client.post("/bots", headers=ADMIN, json=body(name="api"))
    assert again.status_code == 201
    blocked = await client.post(f"/bots/{bot['id']}/restore", headers=ADMIN)
    assert blocked.status_code == 409
    await client.delete(f"/bots/{again.json()['id']}", headers=ADMIN)

    restored = await client.post(f"/bots/{bot['id']}/restore", headers=ADMIN)
    assert restored.status_code == 200
    assert restored.json()["deleted_at"] is None and restored.json()["status"] == "running"


async def test_restore_past_retention_is_409(client: httpx.AsyncClient, settings: Settings) -> None:
    bot_id, _ = await insert_bot(settings, "expired", deleted=True)
    db = create_engine(settings)
    async with create_session_factory(db)() as session, session.begin():
        await session.execute(
            update(Bot)
            .where(Bot.id == bot_id)
            .values(deleted_at=datetime.now(UTC) - timedelta(days=8))
        )
    await db.dispose()
    answer = await client.post(f"/bots/{bot_id}/restore", headers=ADMIN)
    assert answer.status_code == 409
    assert "retention" in answer.json()["detail"]


async def test_no_reachable_engine_is_503_and_leaves_nothing(
    settings_factory: Callable[..., Settings],
) -> None:
    hosts = "unix:///tmp/bf-nowhere-1.sock,unix:///tmp/bf-nowhere-2.sock"
    settings = settings_factory(docker_hosts=hosts)
    app, ctx = await started_app(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post("/bots", headers=ADMIN, json=body(name="nowhere"))
            assert answer.status_code == 503
            detail = answer.json()["detail"]
            assert "bf-nowhere-1.sock" in detail and "bf-nowhere-2.sock" in detail
            listed = await client.get("/bots", headers=ADMIN, params={"include_deleted": True})
            assert listed.json()["total"] == 0
    finally:
        await ctx.__aexit__(None, None, None)
