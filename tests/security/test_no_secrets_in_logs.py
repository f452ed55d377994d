"""No token ever reaches a log: a real ``botfleet serve`` at DEBUG (text and JSON lines) works with
an admin token, a metrics token, a database password and a real bot that posts results with its
own token over HTTP — plus every way a client can misplace a credential (a wrong or near-miss
token, a token in the query string, an 8 KB header). Then the whole log output of the process,
the bot container's own output and every table of the store are searched for each secret.

Also over real TCP: a second loopback address (127.0.0.2) is rate-limited on its own.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability import _serve
from tests.reliability._serve import Serve
from tests.servers import free_port
from tests.support.figures import record_figure
from tests.support.store import Store
from tests.support.wait import wait_until


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_reaches_any_log(
    log_format: str,
    tmp_path: Path,
    fresh_pg_database: str,
    instance: str,
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = secrets.token_urlsafe(32)
    metrics = secrets.token_urlsafe(24)
    password = "pw-" + secrets.token_hex(12)  # PostgreSQL trusts local clients: never checked
    database_url = fresh_pg_database.replace("://postgres@", f"://postgres:{password}@")
    port = free_port()
    monkeypatch.setattr(_serve, "free_port", lambda: port)
    serve = Serve(
        tmp_path,
        ADMIN_TOKEN=admin,
        METRICS_TOKEN=metrics,
        DATABASE_URL=database_url,
        BOTFLEET_INSTANCE=instance,
        LOG_LEVEL="DEBUG",
        LOG_FORMAT=log_format,
        BOT_NETWORK="host",
        MAIN_SERVER_URL=f"http://127.0.0.1:{port}",
        CLEANUP_ENABLED="false",
        AUTH_FAILURE_LIMIT="5",
        CONTAINER_CLEANUP_GRACE_MINUTES="0",
    )
    near_miss = admin[:-1] + ("A" if admin[-1] != "A" else "B")
    wrong = ["wrong-" + secrets.token_urlsafe(24) for _ in range(6)]
    bot_tokens: list[str] = []
    try:
        serve.ready()
        auth = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=serve.url, timeout=30) as http:
            created = http.post(
                "/bots",
                headers=auth,
                json={
                    "name": "chatty",
                    "image": sample_image,
                    "env": {"RESULT_INTERVAL_SECONDS": "0.2"},
                },
            )
            assert created.status_code == 201, created.text
            bot = created.json()
            bot_tokens.append(bot["token"])
            results = f"/bots/{bot['id']}/results"
            # The bot's container posts with its own token over real HTTP.
            wait_until(
                lambda: http.get(results, headers=auth).json()["total"] >= 3,
                timeout=30,
                message="bot results",
                interval=0.1,
            )
            bot_auth = {"Authorization": f"Bearer {bot['token']}"}
            assert http.post(results, headers=bot_auth, json={"data": 1}).status_code == 201
            # Credentials where they do not belong: the query string (access log), the body.
            misplaced = http.post(
                f"{results}?access_token={bot['token']}", json={"data": {"token": "x"}}
            )
            assert misplaced.status_code == 401
            assert http.get(f"/bots?token={admin}", headers=auth).status_code == 200
            assert http.get("/bots", headers={"Authorization": f"Bearer {near_miss}"}).is_error
            assert (
                http.get("/bots", headers={"Authorization": "Bearer " + "a" * 8192}).status_code
                == 401
            )
            assert http.get("/metrics", headers={"Authorization": f"Bearer {metrics}"}).is_success
            assert (
                http.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code
                == 401
            )
            for path in ("/admin/cleanup/status", "/admin/cleanup/orphans", "/admin/cleanup/runs"):
                assert http.get(path, headers=auth).is_success, path
            assert http.post("/admin/cleanup?dry_run=true", headers=auth).is_success
            assert http.delete(f"/bots/{bot['id']}", headers=auth).is_success
            restored = http.post(f"/bots/{bot['id']}/restore", headers=auth)
            assert restored.status_code == 200, restored.text
            if restored.json()["token"]:
                bot_tokens.append(restored.json()["token"])
            container = docker_client.containers.get(restored.json()["container_id"])
            bot_output = container.logs().decode(errors="replace")
            assert http.delete(f"/bots/{bot['id']}", headers=auth).is_success
            assert http.post("/admin/cleanup?dry_run=false", headers=auth).is_success
        # Another loopback address over real TCP: its failures are its own.
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=serve.url, timeout=30, transport=other) as stranger:
            codes = [
                stranger.get("/admin/cleanup/status", headers={"Authorization": f"Bearer {w}"})
                for w in wrong
            ]
        assert [c.status_code for c in codes] == [401] * 5 + [429]
        assert int(codes[-1].headers["Retry-After"]) >= 1
        with httpx.Client(base_url=serve.url, timeout=30) as http:
            assert http.get("/admin/cleanup/status", headers=auth).is_success
    finally:
        serve.stop()
    log = serve.log()

    async def dump() -> str:
        db = Store(_serve_settings(fresh_pg_database), checker=True)
        try:
            rows = [await db.rows(f"SELECT * FROM {t}") for t in ("bots", "results")]
            rows += [await db.rows(f"SELECT * FROM {t}") for t in ("cleanup_runs", "cleanup_audit")]
        finally:
            await db.close()
        return repr(rows)

    stored = asyncio.run(dump())
    # The log really recorded the session: requests, failures, the runs.
    assert "authentication failed" in log and "/admin/cleanup" in log
    assert log.count("\n") > 50
    secrets_used = {
        "admin token": admin,
        "metrics token": metrics,
        "database password": password,
        "near-miss admin token": near_miss,
        **{f"bot token {i}": t for i, t in enumerate(bot_tokens)},
        **{f"wrong token {i}": w for i, w in enumerate(wrong)},
    }
    for name, secret in secrets_used.items():
        assert secret not in log, f"the {name} is in the server log"
        assert secret not in bot_output, f"the {name} is in the bot's output"
        if name != "database password":
            assert secret not in stored, f"the {name} is stored in the database"
    record_figure(
        "no_secrets_in_logs",
        log_format=log_format,
        log_lines=log.count("\n"),
        secrets_checked=len(secrets_used),
        secrets_found=0,
    )


def _serve_settings(url: str) -> Any:
    from tests.conftest import make_settings

    return make_settings(database_url=url)
