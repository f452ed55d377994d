"""Fleet page: how long ``GET /fleet`` (the dashboard's fleet page) takes with 100,000 bots, for
its first page, its last page, a label filter and a name search.

    python -m bench.fleet                    # 100,000 bots (10 % soft-deleted), 3 results each
    BENCH_SCALE=small python -m bench.fleet  # 1/20 of that

A real ``botfleet serve`` process (one uvicorn worker) on a seeded PostgreSQL database. Each
figure is the median (and the slowest) of ``REPEAT`` requests timed by the client on loopback,
which bounds the server's own time from above. The last page is asked for with the cursor that
points just before it (computed from the store), as a client paging through would hold. The
baseline beside it: the same page's SQL straight on asyncpg (no API), in the same run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import asyncpg
import httpx

from bench import pgtools
from bench.export import settle
from bench.ingest import ADMIN_TOKEN, free_port, start_server, stop_server
from bench.report import scale, write_result
from bench.seed import SeedSpec, seed
from botfleet.config import Settings
from botfleet.pagination import encode_cursor
from botfleet.store.migrate import upgrade_sync

REPEAT = 20
LIMIT = 50
GOAL_MS = 300.0


def spec_for(scale_name: str) -> SeedSpec:
    div = 20 if scale_name == "small" else 1
    return SeedSpec(bots=100_000 // div, results_per_bot=3, expired_fraction=0.1, seed=5)


async def last_page_cursor(url: str) -> tuple[str, int]:
    """The cursor a client holds right before the last page of live bots, and that page's size."""
    conn = await asyncpg.connect(url)
    try:
        live = int(await conn.fetchval("SELECT count(*) FROM bots WHERE deleted_at IS NULL"))
        last_size = live % LIMIT or LIMIT
        row = await conn.fetchrow(
            "SELECT created_at, id FROM bots WHERE deleted_at IS NULL"
            " ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
            live - last_size - 1,
        )
    finally:
        await conn.close()
    return encode_cursor([row["created_at"].isoformat(), str(row["id"])]), last_size


async def sql_baseline(url: str) -> float:
    """The first page's own query on asyncpg, best of REPEAT: what the database alone costs."""
    conn = await asyncpg.connect(url)
    try:
        times = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            await conn.fetch(
                "SELECT * FROM bots WHERE deleted_at IS NULL"
                " ORDER BY created_at DESC, id DESC LIMIT $1",
                LIMIT + 1,
            )
            times.append(time.perf_counter() - started)
    finally:
        await conn.close()
    return statistics.median(times) * 1000


def timed(client: httpx.Client, params: dict[str, Any], expect: int | None) -> dict[str, Any]:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        answer = client.get("/fleet", params=params)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")
        body = answer.json()
        if expect is not None and len(body["items"]) != expect:
            raise RuntimeError(f"{params}: {len(body['items'])} items, expected {expect}")
    return {
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "items": len(body["items"]),
        "total": body["total"],
    }


def measure(url: str, base: str) -> dict[str, Any]:
    cursor, last_size = asyncio.run(last_page_cursor(url))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    figures: dict[str, Any] = {"sql_first_page_median_ms": round(asyncio.run(sql_baseline(url)), 1)}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        client.get("/fleet", params={"limit": LIMIT})  # warm: connections, plans
        cases = {
            "first_page": ({"limit": LIMIT}, LIMIT),
            "last_page": ({"limit": LIMIT, "cursor": cursor}, last_size),
            "label_filter": ({"limit": LIMIT, "label": "team=team-3"}, LIMIT),
            "name_search": ({"limit": LIMIT, "q": "bot-4242"}, None),
            "status_deleted": ({"limit": LIMIT, "status": "deleted"}, LIMIT),
        }
        for name, (params, expect) in cases.items():
            figures[name] = timed(client, params, expect)
            f = figures[name]
            line = f"{name:15} median {f['median_ms']:>7} ms  max {f['max_ms']:>7} ms"
            print(f"{line}  total {f['total']}")
    first, last = figures["first_page"]["median_ms"], figures["last_page"]["median_ms"]
    figures["last_over_first"] = round(last / first, 2)
    return figures


def main() -> int:
    name = pgtools.bench_database_name("fleet")
    pgtools.admin(f'CREATE DATABASE "{name}"')
    url = pgtools.db_url(name)
    proc = None
    try:
        upgrade_sync(Settings(database_url=url, admin_token=ADMIN_TOKEN))  # type: ignore[call-arg]
        print(f"seeded {seed(url, spec_for(scale()))}")
        port = free_port()
        proc = start_server(url, port)
        settle(proc.pid)  # its start-up metrics snapshot reads the whole store: not the page's
        load_before = os.getloadavg()[0]
        figures = measure(url, f"http://127.0.0.1:{port}")
        figures["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    finally:
        stop_server(proc)
        pgtools.drop_database(name)
    figures["server"] = "botfleet serve (1 uvicorn worker); times by the client on loopback"
    path = write_result("fleet", figures)
    ok = (
        figures["first_page"]["median_ms"] < GOAL_MS and figures["last_page"]["median_ms"] < GOAL_MS
    )
    print(
        f"last/first {figures['last_over_first']}  -> {path}  {'goal met' if ok else 'GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
