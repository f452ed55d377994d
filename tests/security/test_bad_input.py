"""Hostile input, case by case, on both backends with the real Docker Engine: NUL bytes, lone
surrogates, NaN, 10k-character and right-to-left-override names, SQL-looking strings, huge
integers, ``limit=-1``, invalid JSON, the wrong content type and unsupported methods.

Every answer is a 4xx in the one documented error shape (``{"detail": …}``, with ``errors``
naming the fields on a 422; never a 5xx); what is accepted is stored verbatim — read back with
SQL, not through the API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from botfleet.auth import hash_token
from botfleet.config import Settings
from botfleet.store.models import Bot
from tests.conftest import TEST_TOKEN, started_app
from tests.support.error_shape import assert_error_shape
from tests.support.figures import record_figure
from tests.support.store import Store

ADMIN = {"Authorization": f"Bearer {TEST_TOKEN}"}
BOT_TOKEN = "bad-input-bot-token-" + "q" * 28
BOT = {"Authorization": f"Bearer {BOT_TOKEN}"}
JSON = {"content-type": "application/json"}
RTL = "\u202e"
SQLISH = "x'); DROP TABLE bots; --"


@pytest.fixture
async def hostile(
    settings_factory: Callable[..., Settings], cleanup_containers: None
) -> AsyncIterator[tuple[httpx.AsyncClient, str, Settings]]:
    settings = settings_factory(
        auth_failure_limit=1_000_000, bot_network="none", container_cleanup_enabled=False
    )
    store = Store(settings)
    bot = uuid.uuid4()
    async with store.sessions() as session, session.begin():
        session.add(Bot(id=bot, name="target", image="x", token_hash=hash_token(BOT_TOKEN)))
    await store.close()
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, str(bot), settings
    finally:
        await ctx.__aexit__(None, None, None)


def cases(bot: str, image: str) -> list[tuple[str, str, str, dict[str, Any], set[int]]]:
    """(case, method, path, request kwargs, acceptable statuses)."""
    results = f"/bots/{bot}/results"
    body = {"name": "ok-name", "image": image}
    raw = lambda text: {"content": text.encode(), "headers": {**ADMIN, **JSON}}  # noqa: E731
    bot_raw = lambda text: {"content": text.encode(), "headers": {**BOT, **JSON}}  # noqa: E731
    huge = 10**30
    return [
        # NUL bytes, wherever a string goes
        ("NUL in a name", "POST", "/bots", {"json": {**body, "name": "a\x00b"}}, {422}),
        ("NUL in a label", "POST", "/bots", {"json": {**body, "labels": {"a": "\x00"}}}, {422}),
        ("NUL in an env value", "POST", "/bots", {"json": {**body, "env": {"A": "\x00"}}}, {422}),
        ("NUL in a command", "POST", "/bots", {"json": {**body, "command": ["\x00"]}}, {422}),
        (
            "NUL in result data",
            "POST",
            results,
            {"json": {"data": "a\x00b"}, "headers": BOT},
            {422},
        ),
        (
            "NUL in a data key",
            "POST",
            results,
            {"json": {"data": {"\x00": 1}}, "headers": BOT},
            {422},
        ),
        ("NUL in a label filter", "GET", "/bots", {"params": {"label": "a=\x00"}}, {422}),
        ("NUL in a status filter", "GET", "/bots", {"params": {"status": "\x00"}}, {422}),
        ("NUL in a cursor", "GET", "/bots", {"params": {"cursor": "\x00"}}, {422}),
        ("NUL in a run id", "GET", "/admin/cleanup/runs/%00", {}, {422}),
        ("NUL in only", "POST", "/admin/cleanup", {"params": {"only": "bots\x00"}}, {422}),
        ("NUL in a plan id", "POST", "/admin/cleanup", {"params": {"plan_id": "\x00"}}, {422}),
        # lone surrogates and NaN: not storable, not renderable as JSON
        ("lone surrogate name", "POST", "/bots", raw('{"name": "\\ud800", "image": "x"}'), {422}),
        (
            "lone surrogate label",
            "POST",
            "/bots",
            raw('{"name": "s", "image": "busybox", "labels": {"a": "\\udfff"}}'),
            {422},
        ),
        (
            "lone surrogate env",
            "POST",
            "/bots",
            raw('{"name": "s", "image": "busybox", "env": {"A": "\\ud800"}}'),
            {422},
        ),
        ("lone surrogate data", "POST", results, bot_raw('{"data": ["\\ud800"]}'), {422}),
        ("NaN as a name", "POST", "/bots", raw('{"name": NaN, "image": "busybox"}'), {422}),
        ("NaN in data", "POST", results, bot_raw('{"data": {"x": NaN}}'), {422}),
        ("Infinity in data", "POST", results, bot_raw('{"data": 1e400}'), {422}),
        # long and right-to-left names
        ("10k-character name", "POST", "/bots", {"json": {**body, "name": "n" * 10_000}}, {422}),
        ("10k RTL name", "POST", "/bots", {"json": {**body, "name": RTL * 10_000}}, {422}),
        (
            "10k label value",
            "POST",
            "/bots",
            {"json": {**body, "labels": {"a": "v" * 10_000}}},
            {422},
        ),
        ("10k-character image", "POST", "/bots", {"json": {**body, "image": "i" * 10_000}}, {422}),
        (
            "image over the engine's limit",
            "POST",
            "/bots",
            {"json": {**body, "image": "a" * 238}},
            {422},
        ),
        (
            "image at the engine's limit",
            "POST",
            "/bots",
            {"json": {**body, "image": "a" * 237}},
            {422},
        ),
        ("10k-character path id", "GET", "/bots/" + "b" * 10_000, {}, {422}),
        # SQL-looking strings where the store compares them
        ("SQL in a label filter", "GET", "/bots", {"params": {"label": f"team={SQLISH}"}}, {200}),
        ("SQL in a label key", "GET", "/bots", {"params": {"label": "te'am=x"}}, {422}),
        ("SQL in a status", "GET", "/admin/cleanup/runs", {"params": {"status": SQLISH}}, {422}),
        ("SQL in only", "POST", "/admin/cleanup", {"params": {"only": SQLISH}}, {422}),
        ("SQL in a cursor", "GET", f"/bots/{bot}/results", {"params": {"cursor": SQLISH}}, {422}),
        # huge integers and negative limits
        ("limit=-1 on bots", "GET", "/bots", {"params": {"limit": -1}}, {422}),
        ("limit=-1 on results", "GET", results, {"params": {"limit": -1}}, {422}),
        ("limit=-1 on runs", "GET", "/admin/cleanup/runs", {"params": {"limit": -1}}, {422}),
        ("limit=-1 on orphans", "GET", "/admin/cleanup/orphans", {"params": {"limit": -1}}, {422}),
        (
            "audit_limit=-1",
            "GET",
            f"/admin/cleanup/runs/{uuid.uuid4()}",
            {"params": {"audit_limit": -1}},
            {422},
        ),
        ("huge limit", "GET", "/bots", {"params": {"limit": huge}}, {422}),
        ("huge offset on bots", "GET", "/bots", {"params": {"offset": huge}}, {422}),
        (
            "offset 2**63 on runs",
            "GET",
            "/admin/cleanup/runs",
            {"params": {"offset": 2**63}},
            {422},
        ),
        ("huge orphans limit", "GET", "/admin/cleanup/orphans", {"params": {"limit": huge}}, {422}),
        ("offset=-1", "GET", "/admin/cleanup/runs", {"params": {"offset": -1}}, {422}),
        ("5000-digit number", "POST", results, bot_raw('{"data": ' + "9" * 5000 + "}"), {400, 422}),
        ("400-digit number", "POST", results, bot_raw('{"data": ' + "9" * 400 + "}"), {422}),
        ("2**63 in data", "POST", results, bot_raw(f'{{"data": [{2**63}]}}'), {422}),
        ("2**63 - 1 in data", "POST", results, bot_raw(f'{{"data": {2**63 - 1}}}'), {201}),
        # broken bodies
        ("invalid JSON", "POST", "/bots", raw('{"name": '), {400, 422}),
        (
            "JSON nested 100k deep",
            "POST",
            results,
            bot_raw("[" * 100_000 + "]" * 100_000),
            {400, 422},
        ),
        ("empty body", "POST", "/bots", raw(""), {422}),
        ("a JSON string body", "POST", "/bots", raw('"bots"'), {422}),
        (
            "wrong content type",
            "POST",
            "/bots",
            {
                "content": b'{"name": "x", "image": "busybox"}',
                "headers": {**ADMIN, "content-type": "text/plain"},
            },
            {415, 422},
        ),
        ("form-encoded body", "POST", "/bots", {"data": body}, {415, 422}),
        ("body over 1 MiB", "POST", results, bot_raw('{"data": "' + "x" * (1 << 20) + '"}'), {413}),
        ("unknown field", "POST", "/bots", {"json": {**body, "privileged": True}}, {422}),
        (
            "reserved label",
            "POST",
            "/bots",
            {"json": {**body, "labels": {"botfleet.instance": "x"}}},
            {422},
        ),
        ("reserved env", "POST", "/bots", {"json": {**body, "env": {"BOT_TOKEN": "x"}}}, {422}),
    ]


UNSUPPORTED = [
    ("PUT", "/bots", {"GET", "POST"}),
    ("PATCH", "/bots/{bot}", {"GET", "DELETE"}),
    ("DELETE", "/admin/cleanup", {"POST"}),
    ("PUT", "/bots/{bot}/results", {"GET", "POST"}),
    ("POST", "/admin/cleanup/status", {"GET"}),
    ("DELETE", "/healthz", {"GET"}),
]


async def test_hostile_input_gets_a_4xx_never_a_5xx(
    hostile: tuple[httpx.AsyncClient, str, Settings], sample_image: str
) -> None:
    client, bot, settings = hostile
    tried = 0
    for case, method, path, kwargs, expected in cases(bot, sample_image):
        kwargs = dict(kwargs)
        kwargs["headers"] = kwargs.get("headers") or ADMIN
        answer = await client.request(method, path, **kwargs)
        tried += 1
        assert answer.status_code in expected, f"{case}: {answer.status_code} {answer.text[:300]}"
        if answer.status_code >= 400:
            assert_error_shape(answer)
    for method, template, allowed in UNSUPPORTED:
        answer = await client.request(method, template.format(bot=bot), headers=ADMIN)
        tried += 1
        assert answer.status_code == 405, (method, template, answer.status_code)
        assert set(answer.headers["allow"].split(", ")) == allowed, (template, answer.headers)
        assert answer.json() == {"detail": "Method Not Allowed"}
    db = Store(settings, checker=True)
    try:
        assert await db.value("SELECT count(*) FROM bots") == 1  # nothing was created or dropped
        stored = await db.result_data(bot)
    finally:
        await db.close()
    assert stored == [2**63 - 1]  # the one accepted result, verbatim
    record_figure(
        "bad_input",
        backend="sqlite" if settings.is_sqlite else "postgres",
        cases=tried,
        errors_5xx=0,
    )


async def test_strange_but_valid_strings_are_stored_verbatim(
    hostile: tuple[httpx.AsyncClient, str, Settings], sample_image: str, docker_client: Any
) -> None:
    """SQL-looking and right-to-left text is data: stored and served exactly as sent."""
    client, _bot, settings = hostile
    name = f"{RTL}gnp.exe {SQLISH}"[:100]
    labels = {"team": SQLISH, "note": f"{RTL}abc", "q": "' OR '1'='1"}
    created = await client.post(
        "/bots", headers=ADMIN, json={"name": name, "image": sample_image, "labels": labels}
    )
    assert created.status_code == 201, created.text
    made = created.json()
    data = {"sql": SQLISH, "rtl": RTL + "x", "nested": [{"'; --": "\u202d\u2066"}]}
    posted = await client.post(
        f"/bots/{made['id']}/results",
        headers={"Authorization": f"Bearer {made['token']}"},
        json={"data": data},
    )
    assert posted.status_code == 201, posted.text
    found = await client.get("/bots", headers=ADMIN, params={"label": f"team={SQLISH}"})
    assert [b["id"] for b in found.json()["items"]] == [made["id"]]
    db = Store(settings, checker=True)
    try:
        rows = await db.rows("SELECT name, labels FROM bots WHERE name = :n", n=name)
        assert len(rows) == 1 and rows[0][0] == name
        stored_labels = rows[0][1]
        if isinstance(stored_labels, str):
            stored_labels = json.loads(stored_labels)
        assert stored_labels == labels
        assert await db.result_data(made["id"]) == [data]
        assert await db.value("SELECT count(*) FROM bots") == 2
    finally:
        await db.close()
    # The container's name comes from the bot's id, never from what the caller typed.
    container = docker_client.containers.get(made["container_id"])
    assert container.name == f"botfleet-{made['id']}"
