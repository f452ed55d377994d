"""The cleanup's admin endpoints through the real ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from botfleet.auth import fingerprint
from botfleet.cleanup.lock import lock_for
from botfleet.config import Settings
from botfleet.store.models import CleanupRun
from tests.conftest import TEST_TOKEN
from tests.support.store import Store, store

__all__ = ["store"]


@pytest.fixture
def settings(settings_factory: Any) -> Settings:
    # The container stage has its own tests; here it would only list an empty instance.
    settings: Settings = settings_factory(container_cleanup_enabled=False)
    return settings


async def test_the_seed_curl_commands_work(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    expired = await store.bot(deleted_at=datetime.now(UTC) - timedelta(days=30), results=2)
    dry = await client.post("/admin/cleanup?dry_run=true", headers=admin_headers)
    assert dry.status_code == 200
    body = dry.json()
    assert body["dry_run"] is True and body["trigger"] == "manual"
    assert body["status"] == "succeeded"
    assert set(body["resources"]) >= {"bots", "bot_results", "orphaned_results", "containers"}
    assert (body["resources"]["bots"]["found"], body["resources"]["bots"]["deleted"]) == (1, 0)
    assert body["actor"] == f"api:{fingerprint(TEST_TOKEN)}@127.0.0.1"
    assert TEST_TOKEN not in dry.text

    real = await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)
    assert real.status_code == 200
    assert real.json()["resources"]["bots"]["deleted"] == 1
    assert real.json()["resources"]["bot_results"]["deleted"] == 2
    assert str(expired) not in await store.bot_ids()


async def test_an_omitted_dry_run_only_plans(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    await store.orphans(2)
    answer = await client.post("/admin/cleanup", headers=admin_headers)
    assert answer.status_code == 200 and answer.json()["dry_run"] is True
    assert (await store.counts())["results"] == 2


@pytest.mark.parametrize(
    ("value", "dry"), [("TRUE", True), ("1", True), ("False", False), ("0", False)]
)
async def test_dry_run_spellings(
    client: httpx.AsyncClient, admin_headers: dict[str, str], value: str, dry: bool
) -> None:
    answer = await client.post("/admin/cleanup", params={"dry_run": value}, headers=admin_headers)
    assert answer.status_code == 200 and answer.json()["dry_run"] is dry


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"dry_run": "maybe"}, "dry_run"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"dry_run": ""}, "dry_run"),
        ({"only": "bots,everything"}, "only"),
        ({"plan_id": "not-a-uuid"}, "plan_id"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    answer = await client.post("/admin/cleanup", params=params, headers=admin_headers)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(f"{field}:")
    runs = await client.get("/admin/cleanup/runs", headers=admin_headers)
    assert runs.json()["total"] == 0  # nothing half-done


async def test_an_unknown_plan_is_a_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    answer = await client.post(
        "/admin/cleanup",
        params={"dry_run": "false", "plan_id": str(uuid.uuid4())},
        headers=admin_headers,
    )
    assert answer.status_code == 404 and "plan" in answer.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/cleanup/status",
        "/admin/cleanup/orphans",
        "/admin/cleanup/runs",
        f"/admin/cleanup/runs/{uuid.uuid4()}",
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token-xxxxxxxxxxxxxxxx", "Basic abc"])
async def test_every_endpoint_needs_the_admin_token(
    client: httpx.AsyncClient, path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    answer = await client.get(path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    posted = await client.post("/admin/cleanup?dry_run=false", headers=headers)
    assert posted.status_code == 401


async def test_a_run_in_progress_is_a_409_with_its_id(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings, store: Store
) -> None:
    running = uuid.uuid4()
    async with store.sessions() as session, session.begin():
        session.add(
            CleanupRun(
                id=running,
                trigger="schedule",
                actor="schedule",
                dry_run=False,
                status="running",
                started_at=datetime.now(UTC),
                owner="replica-2:7",
            )
        )
    other_replica = lock_for(settings)
    assert await other_replica.acquire()
    try:
        answer = await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)
        status = (await client.get("/admin/cleanup/status", headers=admin_headers)).json()
    finally:
        await other_replica.release()
    assert answer.status_code == 409
    assert answer.json()["run_id"] == str(running)
    assert str(running) in answer.json()["detail"]
    assert status["running"] == str(running)


async def test_status(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app: FastAPI
) -> None:
    before = (await client.get("/admin/cleanup/status", headers=admin_headers)).json()
    assert before["last_run"] is None and before["running"] is None
    for key, value in {
        "enabled": False,
        "dry_run": False,
        "container_cleanup_enabled": False,
        "retention_days": 7,
        "interval_hours": 6.0,
    }.items():
        assert before[key] == value, key
    assert "next_run_at" in before
    if app.state.services.scheduler is None:
        assert before["next_run_at"] is None
    run = (await client.post("/admin/cleanup?dry_run=true", headers=admin_headers)).json()
    after = (await client.get("/admin/cleanup/status", headers=admin_headers)).json()
    assert after["last_run"]["run_id"] == run["run_id"]


async def test_orphans(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    now = datetime.now(UTC)
    await store.orphans(2)
    kept = await store.bot(deleted_at=now - timedelta(days=1))
    gone = await store.bot(deleted_at=now - timedelta(days=8))
    answer = await client.get("/admin/cleanup/orphans", headers=admin_headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["next_cursor"] is None
    assert body["summary"]["bots"] == {"total": 2, "eligible": 1, "protected": 1}
    assert body["summary"]["orphaned_results"]["eligible"] == 2
    items = {(i["kind"], i["id"]): i for i in body["items"]}
    assert items[("bots", str(gone))]["eligible"] is True
    assert not items[("bots", str(kept))]["eligible"]
    assert "within retention" in items[("bots", str(kept))]["reason"]
    assert items[("bots", str(kept))]["age_seconds"] == pytest.approx(86400, abs=60)
    assert body["total"] == 4
    bad = await client.get("/admin/cleanup/orphans?limit=0", headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("limit:")


async def test_a_purged_bots_audit_record_identifies_it_and_never_shows_its_env(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    """The bots API never shows a bot's env (it may hold secrets); its audit record, which
    outlives it, must not either."""
    deleted_at = datetime.now(UTC) - timedelta(days=30)
    await store.bot(
        deleted_at=deleted_at,
        results=2,
        name="audited-bot",
        labels={"team": "payments"},
        env={"API_KEY": "s3cret-do-not-keep"},
    )
    run = await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)
    detail = await client.get(f"/admin/cleanup/runs/{run.json()['run_id']}", headers=admin_headers)
    assert detail.status_code == 200
    assert "s3cret-do-not-keep" not in detail.text and "API_KEY" not in detail.text
    (record,) = detail.json()["audit"]["items"]
    snapshot = record["snapshot"]
    assert set(snapshot) == {
        "name",
        "image",
        "labels",
        "container_id",
        "created_at",
        "deleted_at",
        "status_at_deletion",  # how it ended: its retention by outcome
        "results_deleted",
    }
    assert snapshot["name"] == "audited-bot" and snapshot["labels"] == {"team": "payments"}
    assert snapshot["results_deleted"] == 2
    assert datetime.fromisoformat(snapshot["deleted_at"]) == deleted_at


async def test_run_history_pages_and_details(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    await store.bot(deleted_at=datetime.now(UTC) - timedelta(days=30), results=1)
    ids = []
    for dry in ("true", "true", "false"):
        ids.append(
            (await client.post(f"/admin/cleanup?dry_run={dry}", headers=admin_headers)).json()[
                "run_id"
            ]
        )
    first = (await client.get("/admin/cleanup/runs?limit=2", headers=admin_headers)).json()
    assert first["total"] == 3 and [r["id"] for r in first["items"]] == ids[:0:-1]
    assert first["next_cursor"]
    second = await client.get(
        "/admin/cleanup/runs",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=admin_headers,
    )
    assert [r["id"] for r in second.json()["items"]] == [ids[0]]
    assert second.json()["next_cursor"] is None
    real = first["items"][0]
    assert real["status"] == "succeeded" and real["deleted"]["bots"] == 1

    detail = (await client.get(f"/admin/cleanup/runs/{ids[2]}", headers=admin_headers)).json()
    assert detail["report"]["run_id"] == ids[2]
    assert detail["audit"]["total"] == 1
    (record,) = detail["audit"]["items"]
    assert record["kind"] == "bots" and record["actor"].startswith("api:")
    assert record["snapshot"]["results_deleted"] == 1

    missing = await client.get(f"/admin/cleanup/runs/{uuid.uuid4()}", headers=admin_headers)
    assert missing.status_code == 404
    bad = await client.get("/admin/cleanup/runs/nope", headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("run_id:")
    bad_cursor = await client.get("/admin/cleanup/runs?cursor=zzz", headers=admin_headers)
    assert bad_cursor.status_code == 422
    filtered = await client.get("/admin/cleanup/runs?status=running", headers=admin_headers)
    assert filtered.json()["total"] == 0
