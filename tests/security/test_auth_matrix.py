"""The auth matrix on every admin endpoint, enumerated from ``app.routes``: a new endpoint is
covered the day it is added — or this file fails, if it is neither admin-only nor on the short
list of deliberately public ones.

Every bad credential gets 401 with ``WWW-Authenticate: Bearer``: never 403, never 500, never the
token echoed back. A bot's own token is no admin token (401).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant

from botfleet.api.deps import require_admin
from botfleet.auth import hash_token
from botfleet.config import Settings
from tests.conftest import TEST_TOKEN, started_app
from tests.support.store import Store

# Open on purpose: probes, the scrape (METRICS_TOKEN has its own tests), the dashboard's static
# files (they hold no data and ask for the token), the bot's own result post (bot token), and
# FastAPI's schema and docs pages.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/admin/dashboard"),
    ("GET", "/admin/dashboard/{name}"),
    ("POST", "/bots/{bot_id}/results"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
BOT_TOKEN = "bot-token-of-a-real-bot-" + "b" * 24

BAD_CREDENTIALS: dict[str, list[tuple[str, bytes]]] = {
    "no header": [],
    "Basic": [("authorization", b"Basic " + base64.b64encode(f"admin:{TEST_TOKEN}".encode()))],
    "Basic with the token": [("authorization", f"Basic {TEST_TOKEN}".encode())],
    "empty bearer": [("authorization", b"Bearer ")],
    "bare Bearer": [("authorization", b"Bearer")],
    "wrong token, same length": [("authorization", f"Bearer {'y' * len(TEST_TOKEN)}".encode())],
    "wrong token, shorter": [("authorization", b"Bearer short")],
    "the token's prefix": [("authorization", f"Bearer {TEST_TOKEN[:-1]}".encode())],
    "the token plus a char": [("authorization", f"Bearer {TEST_TOKEN}x".encode())],
    "token and junk": [("authorization", f"Bearer {TEST_TOKEN} junk".encode())],
    "non-ASCII token": [("authorization", "Bearer tøkén-✓-ünïcode".encode())],
    "latin-1 bytes": [("authorization", b"Bearer \xff\xfe\xfd" + b"x" * 29)],
    "8 KB header": [("authorization", b"Bearer " + b"a" * 8192)],
    "8 KB of the token repeated": [("authorization", b"Bearer " + TEST_TOKEN.encode() * 200)],
    "token in another header": [("x-admin-token", TEST_TOKEN.encode())],
    "a bot's token": [("authorization", f"Bearer {BOT_TOKEN}".encode())],
}


def is_admin_only(dependant: Dependant | None) -> bool:
    def walk(dep: Dependant) -> bool:
        return dep.call is require_admin or any(walk(d) for d in dep.dependencies)

    return dependant is not None and walk(dependant)


def endpoints(app: FastAPI) -> Iterator[tuple[str, str, Dependant | None]]:
    """(method, path, dependant) of every route, whether FastAPI mounts routers eagerly (a flat
    ``app.routes``) or lazily (routes that expand to ``effective_route_contexts()``)."""
    for route in app.routes:
        expand = getattr(route, "effective_route_contexts", None)
        for item in expand() if callable(expand) else [route]:
            for method in sorted(getattr(item, "methods", None) or ()):
                if method != "HEAD":
                    yield method, str(item.path), getattr(item, "dependant", None)


def fill(path: str) -> str:
    """A path with every parameter given a well-formed value (a random UUID, an asset name)."""
    return (
        path.replace("{name}", "dashboard.js")
        .replace("{bot_id}", str(uuid.uuid4()))
        .replace("{run_id}", str(uuid.uuid4()))
    )


@pytest.fixture
async def matrix_app(settings_factory: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    # The failed-auth limiter has tests of its own; here it must not turn 401s into 429s.
    settings = settings_factory(auth_failure_limit=1_000_000, container_cleanup_enabled=False)
    store = Store(settings)
    bot = uuid.uuid4()
    async with store.sessions() as session, session.begin():
        from botfleet.store.models import Bot

        session.add(Bot(id=bot, name="holder", image="x", token_hash=hash_token(BOT_TOKEN)))
    await store.close()
    app, ctx = await started_app(settings)
    try:
        yield app
    finally:
        await ctx.__aexit__(None, None, None)


def test_every_route_is_admin_only_or_deliberately_public(settings: Settings) -> None:
    from botfleet.app import create_app

    app = create_app(settings, migrate=False)
    seen = set()
    for method, path, dependant in endpoints(app):
        seen.add((method, path))
        if (method, path) in PUBLIC:
            continue
        assert is_admin_only(dependant), (
            f"{method} {path} is neither admin-only nor in the PUBLIC list of this test"
        )
    assert len(seen - PUBLIC) >= 10, sorted(seen)  # the admin API really was enumerated
    assert PUBLIC - {("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")} <= seen


async def test_auth_matrix_on_every_admin_endpoint(matrix_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=matrix_app, client=("127.0.0.1", 50001))
    admin = [
        (method, path)
        for method, path, dependant in endpoints(matrix_app)
        if is_admin_only(dependant)
    ]
    tried = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for method, template in admin:
            path = fill(template)
            for case, headers in BAD_CREDENTIALS.items():
                body: dict[str, Any] = {"json": {"name": "x", "image": "busybox"}}
                answer = await client.request(
                    method, path, headers=headers, **(body if method == "POST" else {})
                )
                tried += 1
                where = f"{method} {template} with {case}"
                assert answer.status_code == 401, f"{where}: {answer.status_code} {answer.text}"
                assert answer.headers.get("www-authenticate") == "Bearer", where
                assert set(answer.json()) == {"detail"}, where
                assert TEST_TOKEN not in answer.text and BOT_TOKEN not in answer.text, where
            # The right token passes the check (whatever the endpoint then says of its input).
            good = await client.request(
                method, path, headers={"Authorization": f"bearer {TEST_TOKEN}"}
            )
            assert good.status_code not in (401, 403, 500), f"{method} {template}: {good.text}"
    assert len(admin) >= 10
    # Named here too, so that losing its admin check cannot pass as "deliberately public".
    assert ("GET", "/admin/cleanup/explain/{bot_id}") in admin  # a bot's labels and retention
    print(f"auth matrix: {len(admin)} admin endpoints x {len(BAD_CREDENTIALS)} credentials")
    assert tried == len(admin) * len(BAD_CREDENTIALS)


async def test_the_openapi_document_declares_the_schemes(matrix_app: FastAPI) -> None:
    """Clients and fuzzers (Schemathesis' ignored_auth) see which token each operation needs."""
    doc = matrix_app.openapi()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["AdminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "ADMIN_TOKEN",
    }
    assert schemes["BotToken"]["scheme"] == "bearer"
    for method, path, dependant in endpoints(matrix_app):
        if is_admin_only(dependant):
            assert doc["paths"][path][method.lower()]["security"] == [{"AdminToken": []}], path
    assert doc["paths"]["/bots/{bot_id}/results"]["post"]["security"] == [{"BotToken": []}]


# The endpoints of the fleet view, the logs and the exports: admin-only like the rest, and a
# streaming answer never starts before the token is checked.
STREAMED = [
    ("/bots/{bot_id}/logs", {"follow": "true"}),
    ("/bots/{bot_id}/results", {"format": "csv"}),
    ("/results/export", {"format": "ndjson"}),
]


def test_the_fleet_logs_and_exports_are_admin_only(settings: Settings) -> None:
    from botfleet.app import create_app

    app = create_app(settings, migrate=False)
    admin = {(m, p) for m, p, d in endpoints(app) if is_admin_only(d)}
    wanted = {
        ("GET", "/fleet"),
        ("GET", "/bots/{bot_id}/history"),
        ("GET", "/bots/{bot_id}/logs"),
        ("GET", "/results/export"),
        ("GET", "/bots/{bot_id}/results"),
    }
    assert wanted <= admin, wanted - admin


async def test_streams_refuse_bad_credentials_before_streaming(matrix_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=matrix_app, client=("127.0.0.1", 50003))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for template, params in STREAMED:
            path = fill(template)
            for case, headers in BAD_CREDENTIALS.items():
                answer = await client.get(path, params=params, headers=headers)
                where = f"{template} {params} with {case}"
                assert answer.status_code == 401, f"{where}: {answer.status_code}"
                assert answer.headers["content-type"] == "application/json", where
                assert answer.headers.get("www-authenticate") == "Bearer", where
