"""Results out: ``GET /bots/{id}/results?format=`` and ``GET /results/export``, on both stores.

The two backends render lines differently (PostgreSQL in SQL, SQLite in Python); both must
parse back to exactly the stored rows and values.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, text

from botfleet.config import Settings
from botfleet.store.models import Result
from tests.conftest import TEST_TOKEN, postgres_only
from tests.servers import free_port, live_server
from tests.support.store import Store

TRICKY = [
    {"text": 'a "quoted", comma\nnewline', "n": 1},
    [1, 2.5, None, True],
    "plain string",
    None,
    {"unicode": "żółw ✓", "nested": {"deep": [{"x": -(2**63)}]}},
    # What the NDJSON COPY's delimiter and quote are (\x01, \x02), and backslashes.
    {"control": "\x01\x02\x1f\t", "path": "C:\\temp\\", "quote": '\\"'},
]


def parse_ndjson(body: bytes) -> list[dict[str, Any]]:
    assert body == b"" or body.endswith(b"\n")
    return [json.loads(line) for line in body.decode().splitlines()]


def parse_csv(body: bytes) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    return [{**row, "id": int(row["id"]), "data": json.loads(row["data"])} for row in rows]


def same(found: list[dict[str, Any]], expected: list[tuple[int, uuid.UUID, datetime, Any]]) -> None:
    assert [r["id"] for r in found] == [e[0] for e in expected]
    for row, (rid, bot_id, created, data) in zip(found, expected, strict=True):
        assert row["bot_id"] == str(bot_id), rid
        assert datetime.fromisoformat(row["created_at"]) == created, rid
        assert row["data"] == data, rid


@pytest.fixture
async def seeded(settings: Settings) -> dict[str, Any]:
    store = Store(settings)
    try:
        ops = await store.bot(labels={"team": "ops"}, name="ops-bot")
        dev = await store.bot(labels={"team": "dev"}, name="dev-bot")
        base = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
        rows = []
        for i, data in enumerate(TRICKY * 2):
            owner = ops if i % 2 == 0 else dev
            rows.append({"bot_id": owner, "created_at": base + timedelta(hours=i), "data": data})
        orphan = uuid.uuid4()
        rows.append({"bot_id": orphan, "created_at": base + timedelta(days=2), "data": {"o": 1}})
        async with store.engine.begin() as conn:
            for row in rows:
                await conn.execute(insert(Result), row)
        stored = await store.rows("SELECT id, bot_id, created_at FROM results ORDER BY id")
        expected = [
            (int(r[0]), uuid.UUID(str(r[1])), row["created_at"], row["data"])
            for r, row in zip(stored, rows, strict=True)
        ]
    finally:
        await store.close()
    return {"ops": ops, "dev": dev, "orphan": orphan, "expected": expected, "base": base}


@pytest.mark.parametrize(("fmt", "parse"), [("ndjson", parse_ndjson), ("csv", parse_csv)])
async def test_export_filters_and_formats(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    seeded: dict[str, Any],
    fmt: str,
    parse: Any,
) -> None:
    expected = seeded["expected"]
    everything = await client.get("/results/export", params={"format": fmt}, headers=admin_headers)
    assert everything.status_code == 200, everything.text
    assert everything.headers["content-type"].startswith(
        "application/x-ndjson" if fmt == "ndjson" else "text/csv"
    )
    same(parse(everything.content), expected)  # orphaned results too

    ops = await client.get(
        "/results/export", params={"format": fmt, "label": "team=ops"}, headers=admin_headers
    )
    same(parse(ops.content), [e for e in expected if e[1] == seeded["ops"]])

    since, until = seeded["base"] + timedelta(hours=2), seeded["base"] + timedelta(hours=5)
    window = await client.get(
        "/results/export",
        params={"format": fmt, "since": since.isoformat(), "until": until.isoformat()},
        headers=admin_headers,
    )
    same(parse(window.content), [e for e in expected if since <= e[2] < until])

    one = await client.get(
        f"/bots/{seeded['dev']}/results", params={"format": fmt}, headers=admin_headers
    )
    assert one.status_code == 200
    same(parse(one.content), [e for e in expected if e[1] == seeded["dev"]])

    none = await client.get(
        "/results/export", params={"format": fmt, "label": "team=nobody"}, headers=admin_headers
    )
    assert parse(none.content) == []


async def test_the_json_page_is_unchanged(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: dict[str, Any]
) -> None:
    page = await client.get(f"/bots/{seeded['ops']}/results", headers=admin_headers)
    assert page.status_code == 200 and page.json()["total"] == 6
    assert page.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/results/export", {"format": "xml"}, "format"),
        ("/results/export", {"format": "json"}, "format"),
        ("/results/export", {"since": "last tuesday"}, "since"),
        ("/results/export", {"until": "2026-13-01"}, "until"),
        ("/results/export", {"label": "no-equals"}, "label"),
        ("/results/export", {"until": "2026-01-01"}, "until"),  # a date, not a date-time
        ("/results/export", {"until": "0.5"}, "until"),  # seconds are no RFC 3339
        ("/results/export", {"since": "1700000000"}, "since"),
        ("/results/export", {"since": "2026-02-30T00:00:00Z"}, "since"),
        ("/bots/{bot}/results", {"format": "parquet"}, "format"),
        ("/bots/{bot}/results", {"format": "csv", "since": "soon"}, "since"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    seeded: dict[str, Any],
    path: str,
    params: dict[str, str],
    field: str,
) -> None:
    answer = await client.get(path.format(bot=seeded["ops"]), params=params, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


async def test_an_empty_window_is_an_empty_answer(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: dict[str, Any]
) -> None:
    params = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00+05:00"}
    answer = await client.get("/results/export", params=params, headers=admin_headers)
    assert answer.status_code == 200 and answer.content == b""
    # RFC 3339's other spellings: lower-case t and z, a space, any number of fraction digits.
    params = {"since": "2026-03-01 12:00:00.1234567z", "until": "2026-03-01t14:00:00.123456Z"}
    window = await client.get("/results/export", params=params, headers=admin_headers)
    assert [r["created_at"][11:19] for r in parse_ndjson(window.content)] == [
        "12:00:00",
        "13:00:00",
    ]


async def test_unknown_bot_is_404_before_any_byte(
    client: httpx.AsyncClient, admin_headers: dict[str, str], seeded: dict[str, Any]
) -> None:
    answer = await client.get(
        f"/bots/{uuid.uuid4()}/results", params={"format": "csv"}, headers=admin_headers
    )
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"


@postgres_only
async def test_a_client_that_walks_away_leaves_no_broken_connection(
    settings_factory: Callable[..., Settings],
) -> None:
    """A client that drops an export mid-way (over real HTTP: the response is cancelled while
    the COPY runs) must leave the pool as it found it: every later request still answers."""
    port = free_port()
    settings = settings_factory(port=port, main_server_url=f"http://127.0.0.1:{port}")
    store = Store(settings)
    try:
        bot = await store.bot(name="talkative")
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO results (bot_id, created_at, data) SELECT :b, now(),"
                    " jsonb_build_object('n', g, 'pad', repeat('x', 200))"
                    " FROM generate_series(1, 50000) AS g"
                ),
                {"b": bot},
            )
    finally:
        await store.close()
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}

    def walk_away(fmt: str) -> None:
        with (
            httpx.Client(base_url=url, headers=headers, timeout=30) as http,
            http.stream("GET", "/results/export", params={"format": fmt}) as answer,
        ):
            assert answer.status_code == 200
            next(answer.iter_raw(1 << 16))  # one chunk, then the connection closes

    with live_server(settings) as url:
        for fmt in ("ndjson", "csv", "ndjson"):
            await asyncio.to_thread(walk_away, fmt)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            # More requests than the pool holds connections: each pooled one is used again.
            for _ in range(25):
                assert (await http.get("/bots", params={"limit": 1})).status_code == 200
            whole = await http.get("/results/export", params={"format": "csv"})
        assert len(parse_csv(whole.content)) == 50000
