"""A run's audit trail through the API: stored a batch of bots per record, read one bot per item.

On SQLite and PostgreSQL, with two retention rules (two reasons in one batch) and batches of 3.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from botfleet.cleanup.run_history import run_detail
from botfleet.config import Settings
from botfleet.pagination import PageRequest
from tests.support.store import Store, store

__all__ = ["store"]

POLICY = """
rules:
  - name: fast
    match: {tier: fast}
    bot_retention_days: 1
"""


@pytest.fixture
def settings(settings_factory: Any, tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings: Settings = settings_factory(
        container_cleanup_enabled=False, cleanup_batch_size=3, cleanup_policy_file=policy
    )
    return settings


async def test_pages_of_the_audit_trail_name_every_purged_bot_once_with_its_reason(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=30)
    fast = {await store.bot(deleted_at=long_ago, labels={"tier": "fast"}) for _ in range(4)}
    default = {await store.bot(deleted_at=long_ago, results=1) for _ in range(3)}
    run = await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)
    assert run.json()["resources"]["bots"]["deleted"] == 7
    run_id = run.json()["run_id"]
    records = await store.audit_records(run_id)
    # Stored by batch and reason: fewer records than bots, each naming how many it covers.
    assert len(records) < 7 and sum(r["resource_count"] for r in records) == 7

    seen: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"audit_limit": 2}
        if cursor:
            params["audit_cursor"] = cursor
        body = (
            await client.get(f"/admin/cleanup/runs/{run_id}", params=params, headers=admin_headers)
        ).json()
        assert body["audit"]["total"] == 7
        assert len(body["audit"]["items"]) <= 2
        for item in body["audit"]["items"]:
            assert item["resource_id"] not in seen, "an item served twice"
            seen[item["resource_id"]] = item
        pages += 1
        cursor = body["audit"]["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert set(seen) == {str(b) for b in fast | default}
    for bot in fast:
        item = seen[str(bot)]
        assert item["reason"] == "bots: expired (rule 1 (fast): 1d)" and item["snapshot"][
            "labels"
        ] == {"tier": "fast"}
        assert item["snapshot"]["results_deleted"] == 0 and "id" not in item["snapshot"]
    for bot in default:
        item = seen[str(bot)]
        assert item["reason"].startswith("bots: expired (") and "fast" not in item["reason"]
        assert item["snapshot"]["results_deleted"] == 1
        assert item["kind"] == "bots" and item["actor"].startswith("api:")


async def test_pages_by_offset_read_the_same_items_as_pages_by_cursor(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    """The run detail's offset paging (PageRequest.offset; SQL window sums of each record's
    items) agrees with the cursor's, item for item, on both backends."""
    long_ago = datetime.now(UTC) - timedelta(days=30)
    for i in range(7):
        await store.bot(deleted_at=long_ago, labels={"tier": "fast"} if i % 2 else {})
    run_id = (await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)).json()[
        "run_id"
    ]
    whole = (
        await client.get(
            f"/admin/cleanup/runs/{run_id}", params={"audit_limit": 50}, headers=admin_headers
        )
    ).json()["audit"]
    expected = [item["resource_id"] for item in whole["items"]]
    assert len(expected) == 7 == whole["total"]
    async with store.sessions() as session:
        for offset in range(9):
            detail = await run_detail(
                session, uuid.UUID(run_id), PageRequest(limit=2, offset=offset)
            )
            got = [item["resource_id"] for item in detail["audit"]["items"]]
            assert got == expected[offset : offset + 2], offset
            assert detail["audit"]["total"] == 7


async def test_a_cursor_from_elsewhere_is_refused_by_name(
    client: httpx.AsyncClient, admin_headers: dict[str, str], store: Store
) -> None:
    await store.bot(deleted_at=datetime.now(UTC) - timedelta(days=30))
    run_id = (await client.post("/admin/cleanup?dry_run=false", headers=admin_headers)).json()[
        "run_id"
    ]
    runs_cursor = (await client.get("/admin/cleanup/runs?limit=1", headers=admin_headers)).json()
    negative = "WzEsLTVd"  # [1,-5]
    for bad in ("zzz", runs_cursor["next_cursor"] or "WyJhIiwxXQ", negative, "WzFd"):
        got = await client.get(
            f"/admin/cleanup/runs/{run_id}", params={"audit_cursor": bad}, headers=admin_headers
        )
        assert got.status_code == 422, got.text
        assert got.json()["detail"].startswith("audit_cursor:"), got.text
