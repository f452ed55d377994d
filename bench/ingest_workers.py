"""Result ingest with 1 and 2 worker processes (``botfleet serve --workers N``), same database.

    python -m bench.ingest_workers                    # 3 rounds of 2,000 single posts each
    BENCH_SCALE=small python -m bench.ingest_workers  # 1 round of 200

Each round starts ``botfleet serve`` with 1 worker and with 2 (the order flips every round) and
posts single results over 8 connections; the figure is requests/s and the server's CPU per
request (every process of the server: the parent and its workers). Every row is counted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
from typing import Any

import psutil

from bench import pgtools
from bench.ingest import (
    ADMIN_TOKEN,
    add_bot,
    count,
    free_port,
    payload,
    start_server,
    stop_server,
    through_api,
)
from bench.report import scale, write_result
from botfleet.config import Settings
from botfleet.store.migrate import upgrade_sync

CONNECTIONS = 8


def tree_cpu(pid: int) -> float:
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


async def one(url: str, workers: int, posts: int) -> dict[str, Any]:
    port = free_port()
    os.environ["WEB_CONCURRENCY"] = str(workers)
    try:
        proc = start_server(url, port)
    finally:
        del os.environ["WEB_CONCURRENCY"]
    try:
        bot_id, token = await add_bot(url)
        bodies = [{"data": payload(i)} for i in range(posts)]
        base = f"http://127.0.0.1:{port}"
        cpu = tree_cpu(proc.pid)
        load = round(os.getloadavg()[0], 2)
        seconds = await through_api(base, f"/bots/{bot_id}/results", token, bodies, CONNECTIONS)
        cpu = tree_cpu(proc.pid) - cpu
        lost = posts - await count(url, bot_id)
    finally:
        stop_server(proc)
    figure = {
        "workers": workers,
        "requests_per_s": round(posts / seconds, 1),
        "server_cpu_ms_per_request": round(cpu / posts * 1000, 3),
        "lost_results": lost,
        "load_1m": load,
    }
    print(figure, flush=True)
    return figure


def main() -> int:
    small = scale() == "small"
    posts, rounds = (200, 1) if small else (2000, 3)
    name = pgtools.bench_db(f"workers_{secrets.token_hex(4)}")
    pgtools.admin(f'CREATE DATABASE "{name}"')
    url = pgtools.db_url(name)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    try:
        upgrade_sync(Settings(database_url=url, admin_token=ADMIN_TOKEN))  # type: ignore[call-arg]
        for r in range(rounds):
            for workers in (1, 2) if r % 2 == 0 else (2, 1):
                runs[workers].append(asyncio.run(one(url, workers, posts)))
    finally:
        pgtools.drop_database(name)
    figures: dict[str, Any] = {"posts": posts, "connections": CONNECTIONS, "rounds": rounds}
    for workers, results in runs.items():
        figures[f"workers_{workers}"] = {
            "requests_per_s": statistics.median(x["requests_per_s"] for x in results),
            "server_cpu_ms_per_request": statistics.median(
                x["server_cpu_ms_per_request"] for x in results
            ),
            "each_round": results,
        }
    figures["speedup_2_vs_1"] = round(
        statistics.median(
            b["requests_per_s"] / a["requests_per_s"] for a, b in zip(runs[1], runs[2], strict=True)
        ),
        3,
    )
    figures["lost_results"] = sum(x["lost_results"] for r in runs.values() for x in r)
    figures["load_average_1m"] = os.getloadavg()[0]
    write_result("ingest_workers", figures)
    print(f"2 workers / 1 worker requests/s (median of rounds): {figures['speedup_2_vs_1']}")
    return 0 if figures["lost_results"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
