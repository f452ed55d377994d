"""Failed authentication is rate-limited per client address: 429 with ``Retry-After`` once an
address failed too often, on the admin endpoints and on the bot-token result post alike (each with
a budget of its own); the right token from another address still works; every failure is logged
with its path and address, never with the token it presented.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from botfleet.auth import hash_token
from botfleet.config import Settings
from botfleet.store.models import Bot
from tests.conftest import TEST_TOKEN, started_app
from tests.support.store import Store

LIMIT = 5
BOT_TOKEN = "the-bot-s-own-token-" + "k" * 28
WRONG = ["wrong-token-" + "w" * 20 + str(i) for i in range(LIMIT + 3)]


@pytest.fixture
async def limited(settings_factory: Callable[..., Settings]) -> AsyncIterator[tuple[FastAPI, str]]:
    settings = settings_factory(auth_failure_limit=LIMIT, auth_failure_window_seconds=60)
    store = Store(settings)
    bot = uuid.uuid4()
    async with store.sessions() as session, session.begin():
        session.add(Bot(id=bot, name="poster", image="x", token_hash=hash_token(BOT_TOKEN)))
    await store.close()
    app, ctx = await started_app(settings)
    try:
        yield app, str(bot)
    finally:
        await ctx.__aexit__(None, None, None)


def client_from(app: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_no_secret_logged(records: list[logging.LogRecord], *secrets: str) -> None:
    for record in records:
        text = f"{record.getMessage()} {record.__dict__!r}"
        for secret in secrets:
            assert secret not in text, f"a token reached the log: {record.name} {text[:200]}"


async def test_admin_failures_are_limited_per_address(
    limited: tuple[FastAPI, str], caplog: pytest.LogCaptureFixture
) -> None:
    app, _bot = limited
    caplog.set_level(logging.INFO)
    async with client_from(app, "10.9.0.1") as attacker, client_from(app, "10.9.0.2") as operator:
        for token in WRONG[:LIMIT]:
            answer = await attacker.get("/admin/cleanup/status", headers=bearer(token))
            assert answer.status_code == 401
        refused = await attacker.get("/admin/cleanup/status", headers=bearer(WRONG[LIMIT]))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert set(refused.json()) == {"detail"}
        # Refused before its token is looked at: even the right one waits out the window here.
        held = await attacker.get("/admin/cleanup/status", headers=bearer(TEST_TOKEN))
        assert held.status_code == 429
        # Another address is not affected, with the right token or a wrong one.
        assert (await operator.get("/admin/cleanup/status", headers=bearer(TEST_TOKEN))).is_success
        wrong = await operator.get("/admin/cleanup/status", headers=bearer(WRONG[-1]))
        assert wrong.status_code == 401
        # Bot-token failures have their own budget: the attacker's bots may still post.
    failures = [r for r in caplog.records if r.getMessage() == "authentication failed"]
    assert [r.__dict__["client_ip"] for r in failures] == ["10.9.0.1"] * LIMIT + ["10.9.0.2"]
    assert {r.__dict__["path"] for r in failures} == {"/admin/cleanup/status"}
    assert_no_secret_logged(caplog.records, TEST_TOKEN, BOT_TOKEN, *WRONG)


async def test_bot_token_failures_are_limited_per_address(
    limited: tuple[FastAPI, str], caplog: pytest.LogCaptureFixture
) -> None:
    app, bot = limited
    caplog.set_level(logging.INFO)
    path = f"/bots/{bot}/results"
    body: dict[str, Any] = {"json": {"data": {"n": 1}}}
    async with client_from(app, "10.9.1.1") as sprayer, client_from(app, "10.9.1.2") as poster:
        assert (await sprayer.post(path, **body)).status_code == 401  # no token at all
        for token in WRONG[: LIMIT - 1]:
            assert (await sprayer.post(path, headers=bearer(token), **body)).status_code == 401
        refused = await sprayer.post(path, headers=bearer(WRONG[LIMIT]), **body)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # The bot itself, posting from another address, is not affected.
        assert (await poster.post(path, headers=bearer(BOT_TOKEN), **body)).status_code == 201
        # The admin budget of the sprayer's address is untouched by bot-token failures.
        status = await sprayer.get("/admin/cleanup/status", headers=bearer(TEST_TOKEN))
        assert status.is_success
        # The admin token is a known token, not a guess: a 403 that costs no budget.
        for _ in range(LIMIT + 1):
            answer = await poster.post(path, headers=bearer(TEST_TOKEN), **body)
            assert answer.status_code == 403
    failures = [r for r in caplog.records if r.getMessage() == "authentication failed"]
    assert len(failures) == LIMIT and {r.__dict__["path"] for r in failures} == {path}
    assert_no_secret_logged(caplog.records, TEST_TOKEN, BOT_TOKEN, *WRONG)
