"""``GET /fleet`` and ``GET /bots/{id}/history`` on both stores: counts, figures, filters,
paging, and a history from the bot's events, the runs' stored plans and the audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from botfleet.bot_spec import NewBot
from botfleet.bots import BotService
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot, CleanupAudit, Result
from botfleet.store.session import create_engine, create_session_factory
from tests.support.store import Store


async def add_bots(settings: Settings, now: datetime) -> dict[str, Any]:
    store = Store(settings)
    made: dict[str, Any] = {}
    try:
        rows = []
        for i in range(12):
            status = ["running", "exited", "failed", "deleted"][i % 4]
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "name": "100%_sure" if i == 5 else f"bot-{i:02d}",
                    "image": "x",
                    "token_hash": uuid.uuid4().hex,
                    "status": status,
                    "labels": {"team": "ops" if i < 6 else "dev"},
                    "container_id": f"c{i:02d}" + "0" * 60,
                    "engine": "local",
                    "created_at": now - timedelta(minutes=i),
                    "updated_at": now,
                    "deleted_at": now - timedelta(minutes=1) if status == "deleted" else None,
                }
            )
        async with store.engine.begin() as conn:
            await conn.execute(insert(Bot), rows)
            busy = rows[0]["id"]
            await conn.execute(
                insert(Result),
                [
                    {"bot_id": busy, "created_at": now - timedelta(minutes=m), "data": {"m": m}}
                    for m in (1, 30, 59, 61, 300)
                ],
            )
        made["rows"] = rows
        made["busy"] = busy
    finally:
        await store.close()
    return made


async def test_fleet_counts_figures_filters_and_paging(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    now = datetime.now(UTC)
    made = await add_bots(settings, now)
    answer = await client.get("/fleet", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["counts"] == {
        "pending": 0, "running": 3, "exited": 3, "failed": 3, "stopped": 0, "deleted": 3,
    }  # fmt: skip
    assert body["total"] == 9 and len(body["items"]) == 9  # live bots, newest first
    assert [b["name"] for b in body["items"]][:2] == ["bot-00", "bot-01"]
    busy = next(b for b in body["items"] if b["id"] == str(made["busy"]))
    assert busy["results_last_hour"] == 3
    last = datetime.fromisoformat(busy["last_result_at"])
    assert abs(last - (now - timedelta(minutes=1))) < timedelta(seconds=1)
    assert all(b["last_result_at"] is None for b in body["items"] if b["id"] != str(made["busy"]))

    ops = (await client.get("/fleet", params={"label": "team=ops"}, headers=admin_headers)).json()
    assert ops["counts"]["deleted"] == 1 and sum(ops["counts"].values()) == 6
    assert {b["labels"]["team"] for b in ops["items"]} == {"ops"}

    deleted = await client.get("/fleet", params={"status": "deleted"}, headers=admin_headers)
    assert {b["status"] for b in deleted.json()["items"]} == {"deleted"}

    # The search takes % and _ literally, and ignores case.
    found = (await client.get("/fleet", params={"q": "0%_S"}, headers=admin_headers)).json()
    assert [b["name"] for b in found["items"]] == ["100%_sure"]
    assert sum(found["counts"].values()) == 1
    none = (await client.get("/fleet", params={"q": "%"}, headers=admin_headers)).json()
    assert [b["name"] for b in none["items"]] == ["100%_sure"]

    # Cursor pages cover every live bot exactly once.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/fleet", params=params, headers=admin_headers)).json()
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(str(r["id"]) for r in made["rows"] if r["status"] != "deleted")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "a\x01b"}, "q"),
        ({"q": ""}, "q"),
        ({"q": "x" * 101}, "q"),
        ({"status": "sleeping"}, "status"),
        ({"label": "nokey"}, "label"),
        ({"limit": 0}, "limit"),
        ({"cursor": "not-ours"}, "cursor"),
    ],
)
async def test_fleet_bad_input_names_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, Any], field: str
) -> None:
    answer = await client.get("/fleet", params=params, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


async def test_history_from_the_row_and_the_audit_trail(
    client: httpx.AsyncClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    now = datetime.now(UTC)
    made = await add_bots(settings, now)
    bot = next(r for r in made["rows"] if r["status"] == "deleted")
    run_id = uuid.uuid4()
    store = Store(settings)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                insert(CleanupAudit),
                [
                    {
                        "run_id": run_id,
                        "kind": "containers",
                        "resource_id": bot["container_id"],
                        "engine": "local",
                        "reason": "exited, owner deleted",
                        "actor": "schedule",
                        "deleted_at": now,
                    },
                    {  # another container's record: not this bot's
                        "run_id": run_id,
                        "kind": "containers",
                        "resource_id": "f" * 64,
                        "engine": "local",
                        "reason": "orphaned",
                        "actor": "schedule",
                        "deleted_at": now,
                    },
                ],
            )
    finally:
        await store.close()
    answer = await client.get(f"/bots/{bot['id']}/history", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [i["event"] for i in items] == ["created", "deleted", "container_removed"]
    assert items[2]["run_id"] == str(run_id) and "owner deleted" in items[2]["detail"]
    missing = await client.get(f"/bots/{uuid.uuid4()}/history", headers=admin_headers)
    assert missing.status_code == 404


@pytest.mark.docker
async def test_history_shows_deletes_restores_and_the_runs_that_planned_it(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app: FastAPI,
    settings: Settings,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    """Each delete and restore is recorded; a run's stored plan shows where it included the bot
    (its stopped container's removal, later its purge) and nowhere else: not a plan made while
    the bot lived, nor one whose retention had not run out."""
    now = datetime.now(UTC).replace(microsecond=0)
    cleanup = app.state.services.cleanup
    db = create_engine(settings)
    fleet = Fleet.from_settings(settings)
    service = BotService(sessions=create_session_factory(db), fleet=fleet, settings=settings)

    async def dry_run(at: datetime) -> str:
        cleanup.clock = lambda: at
        answer = await client.post(
            "/admin/cleanup", params={"dry_run": "true"}, headers=admin_headers
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["run_id"])

    try:
        quick = NewBot(name="phoenix", image=sample_image, command=["sh", "-c", "exit 0"])
        bot, _ = await service.create(quick, now=now - timedelta(days=1))
        await service.delete(bot.id, now=now - timedelta(days=1))
        # An hour after its container exited (past the grace): the plan removes it.
        removal = await dry_run(now + timedelta(hours=1))
        await service.restore(bot.id, now=now + timedelta(hours=2))
        await dry_run(now + timedelta(hours=2, minutes=30))  # live: not this bot's plan
        await service.delete(bot.id, now=now + timedelta(hours=3))
        later = await dry_run(now + timedelta(days=2))  # within retention: its container only
        purge = await dry_run(now + timedelta(days=8))  # past the 7 days: purge and container
    finally:
        await fleet.close()
        await db.dispose()
    answer = await client.get(f"/bots/{bot.id}/history", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    got = [(i["event"], i["run_id"], i["detail"].split(" (")[0]) for i in answer.json()["items"]]
    container = f"removal of containers {bot.container_id[:12]}"
    assert got == [
        ("created", None, f"image {sample_image} on local"),
        ("deleted", None, "soft delete"),
        ("planned", removal, f"dry run: {container}"),
        ("restored", None, "restored: its container started again"),
        ("deleted", None, "soft delete"),
        ("planned", later, f"dry run: {container}"),
        ("planned", purge, "dry run: purge of the bot"),
        ("planned", purge, f"dry run: {container}"),
    ], got
