"""Result ingest: results/s through ``POST /bots/{id}/results`` vs plain INSERTs, same database.

    python -m bench.ingest                    # 4,000 single posts, 100 batches of 1,000
    BENCH_SCALE=small python -m bench.ingest  # a twentieth of that, one round

A real ``botfleet serve`` process (one uvicorn worker) on a fresh PostgreSQL database; the client
runs in this process on the same 2 cores. Baselines on the same database, one asyncpg connection:
an INSERT loop (one row per statement, autocommit: what a naive server does per request) and an
executemany of 1,000 rows per transaction (what a batched post amounts to). Each API figure is
printed as a ratio to its baseline. Every row is counted afterwards: a lost result fails the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench import pgtools
from bench.report import scale, write_result
from botfleet.auth import hash_token
from botfleet.config import Settings
from botfleet.store.migrate import upgrade_sync

ADMIN_TOKEN = "bench-admin-" + "x" * 32
BATCH = 1000
CONCURRENCY = 8


def sizes() -> dict[str, int]:
    div = 20 if scale() == "small" else 1
    return {"single": 4000 // div, "batches": 100 // div, "batch_size": BATCH}


def payload(i: int) -> dict[str, Any]:
    return {"seq": i, "ok": True, "value": 12.5, "note": "sample result"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- baselines ------------------------------------------------------------------------------
async def insert_loop(url: str, bot_id: uuid.UUID, n: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC)
        started = time.perf_counter()
        for i in range(n):
            await conn.execute(
                "INSERT INTO results (bot_id, created_at, data) VALUES ($1, $2, $3::jsonb)",
                bot_id,
                now,
                json.dumps(payload(i)),
            )
        return time.perf_counter() - started
    finally:
        await conn.close()


async def insert_batches(url: str, bot_id: uuid.UUID, batches: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC)
        started = time.perf_counter()
        for b in range(batches):
            rows = [(bot_id, now, json.dumps(payload(b * BATCH + i))) for i in range(BATCH)]
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO results (bot_id, created_at, data) VALUES ($1, $2, $3::jsonb)",
                    rows,
                )
        return time.perf_counter() - started
    finally:
        await conn.close()


# --- through the API ------------------------------------------------------------------------
async def through_api(
    base: str, path: str, token: str, bodies: list[Any], concurrency: int
) -> float:
    """Post every body, ``concurrency`` connections at a time; any non-201 aborts the run."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                answer = await client.post(path, json=body, headers=headers)
                if answer.status_code != 201:
                    raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def stop_server(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, 30 s to go, then SIGKILL (None: nothing was started)."""
    if proc is None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(url: str, port: int, *, lean: bool = False) -> subprocess.Popen[bytes]:
    """``botfleet serve`` on ``port``, or with ``lean`` the anchor (``bench.lean_ingest``)."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MAIN_SERVER_URL": f"http://127.0.0.1:{port}",
        "CLEANUP_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "BOTFLEET_INSTANCE": "bench-ingest",
    }
    command = (
        ["-m", "bench.lean_ingest", url, str(port)]
        if lean
        else ["-m", "botfleet.cli", "serve", "--no-migrate"]
    )
    proc = subprocess.Popen(
        [sys.executable, *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"the server did not start:\n{err}")
        time.sleep(0.1)


async def add_bot(url: str) -> tuple[uuid.UUID, str]:
    """A bot row without a container: ingest does not care whether the bot runs."""
    bot_id, token = uuid.uuid4(), secrets.token_urlsafe(32)
    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO bots (id, name, image, env, labels, status, token_hash, created_at, "
            "updated_at) VALUES ($1, $2, 'bench/none:1', '{}', '{}', 'running', $3, $4, $4)",
            bot_id,
            f"ingest-{bot_id.hex[:8]}",
            hash_token(token),
            now,
        )
    finally:
        await conn.close()
    return bot_id, token


async def count(url: str, bot_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM results WHERE bot_id = $1", bot_id))
    finally:
        await conn.close()


def rate(rows: int, seconds: float) -> float:
    return round(rows / seconds, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: what a request costs, whatever else runs."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


ROUNDS = 1 if scale() == "small" else 3
# Measured in alternating rounds (the order flips every round), each pair's ratio per round.
PAIRS = {
    "ratio_single_vs_lean": ("api_single_1_conn", "lean_single_1_conn"),
    "ratio_batch_vs_executemany": ("api_batch_1000_1_conn", "insert_executemany_1000"),
}


async def measure(
    url: str, base: str, lean_base: str, server_pid: int, lean_pid: int
) -> dict[str, Any]:
    n = sizes()
    single_bodies = [{"data": payload(i)} for i in range(n["single"])]
    batch_bodies = [
        [{"data": payload(b * BATCH + i)} for i in range(BATCH)] for b in range(n["batches"])
    ]
    rows_batched = n["batches"] * BATCH
    path = "/bots/{}/results"
    runs: dict[str, tuple[int, int, Callable[[uuid.UUID, str], Awaitable[float]]]] = {
        "insert_loop": (n["single"], 0, lambda b, _t: insert_loop(url, b, n["single"])),
        "lean_single_1_conn": (
            n["single"],
            lean_pid,
            lambda b, t: through_api(lean_base, path.format(b), t, single_bodies, 1),
        ),
        "api_single_1_conn": (
            n["single"],
            server_pid,
            lambda b, t: through_api(base, path.format(b), t, single_bodies, 1),
        ),
        "api_single_8_conn": (
            n["single"],
            server_pid,
            lambda b, t: through_api(base, path.format(b), t, single_bodies, CONCURRENCY),
        ),
        "insert_executemany_1000": (
            rows_batched,
            0,
            lambda b, _t: insert_batches(url, b, n["batches"]),
        ),
        "api_batch_1000_1_conn": (
            rows_batched,
            server_pid,
            lambda b, t: through_api(base, path.format(b), t, batch_bodies, 1),
        ),
        "api_batch_1000_4_conn": (
            rows_batched,
            server_pid,
            lambda b, t: through_api(base, path.format(b), t, batch_bodies, 4),
        ),
    }
    lost = 0

    async def run_one(name: str) -> dict[str, Any]:
        nonlocal lost
        rows, pid, run = runs[name]
        bot_id, token = await add_bot(url)  # a bot per contender and round: counts are exact
        cpu_before = cpu_seconds(pid) if pid else 0.0
        load = round(os.getloadavg()[0], 2)
        seconds = await run(bot_id, token)
        server_cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
        lost += rows - await count(url, bot_id)
        figure: dict[str, Any] = {
            "rows": rows,
            "seconds": round(seconds, 3),
            "rows_per_s": rate(rows, seconds),
            "load_1m": load,
        }
        line = f"{name:26} {figure['rows_per_s']:>10} results/s  ({rows} in {seconds:.2f}s)"
        if pid:
            # Server CPU per request is the server's own cost, steady under load from others.
            requests = rows // (BATCH if "batch" in name else 1)
            figure["server_cpu_ms_per_request"] = round(server_cpu / requests * 1000, 3)
            figure["server_cpu_us_per_result"] = round(server_cpu / rows * 1e6, 1)
            line += f"  server CPU {figure['server_cpu_ms_per_request']} ms/request"
        print(f"{line}  load {load}", flush=True)
        return figure

    figures: dict[str, Any] = {"sizes": n}
    rounds: list[dict[str, Any]] = []
    for number in range(ROUNDS):
        this: dict[str, Any] = {}
        for first, second in PAIRS.values():
            order = (first, second) if number % 2 == 0 else (second, first)
            for name in order:
                this[name] = await run_one(name)
        rounds.append(this)
    for name in ("insert_loop", "api_single_8_conn", "api_batch_1000_4_conn"):
        figures[name] = await run_one(name)
    paired = {name for pair in PAIRS.values() for name in pair}
    for name in paired:  # the median round of each contender, by rate
        ordered = sorted((r[name] for r in rounds), key=lambda f: f["rows_per_s"])
        figures[name] = {
            **ordered[len(ordered) // 2],
            "rounds_rows_per_s": [r[name]["rows_per_s"] for r in rounds],
        }
    for key, (ours, anchor) in PAIRS.items():
        figures[key] = round(
            statistics.median(r[ours]["rows_per_s"] / r[anchor]["rows_per_s"] for r in rounds), 3
        )
    figures["server_cpu_ms_single"] = statistics.median(
        r["api_single_1_conn"]["server_cpu_ms_per_request"] for r in rounds
    )
    figures["server_cpu_ms_lean"] = statistics.median(
        r["lean_single_1_conn"]["server_cpu_ms_per_request"] for r in rounds
    )
    figures["rounds"] = rounds
    per_s = {
        k: v["rows_per_s"] for k, v in figures.items() if isinstance(v, dict) and "rows_per_s" in v
    }
    figures["ratios"] = {
        "api_single_1_conn / lean_single_1_conn (median of rounds)": figures[
            "ratio_single_vs_lean"
        ],
        "api_batch_1000_1_conn / insert_executemany_1000 (median of rounds)": figures[
            "ratio_batch_vs_executemany"
        ],
        "api_single_1_conn / insert_loop": round(
            per_s["api_single_1_conn"] / per_s["insert_loop"], 3
        ),
        "api_single_8_conn / insert_loop": round(
            per_s["api_single_8_conn"] / per_s["insert_loop"], 3
        ),
        "api_batch_1000_4_conn / insert_executemany_1000": round(
            per_s["api_batch_1000_4_conn"] / per_s["insert_executemany_1000"], 3
        ),
    }
    figures["lost_results"] = lost
    return figures


def main() -> int:
    name = pgtools.bench_db(f"ingest_{secrets.token_hex(4)}")
    pgtools.admin(f'CREATE DATABASE "{name}"')
    url = pgtools.db_url(name)
    proc = lean = None
    try:
        upgrade_sync(Settings(database_url=url, admin_token=ADMIN_TOKEN))  # type: ignore[call-arg]
        port, lean_port = free_port(), free_port()
        proc = start_server(url, port)
        lean = start_server(url, lean_port, lean=True)
        load_before = os.getloadavg()[0]
        figures = asyncio.run(
            measure(
                url,
                f"http://127.0.0.1:{port}",
                f"http://127.0.0.1:{lean_port}",
                proc.pid,
                lean.pid,
            )
        )
        # Other work on the same 2 cores moves every figure; the ratios move less.
        figures["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    finally:
        for server in (proc, lean):
            stop_server(server)
        pgtools.drop_database(name)
    figures["server"] = (
        "botfleet serve (1 uvicorn worker) and the lean anchor (bench.lean_ingest, 1 worker),"
        " client in the same machine"
    )
    path = write_result("ingest", figures)
    for label, ratio in figures["ratios"].items():
        print(f"ratio {label}: {ratio}")
    print(f"lost results: {figures['lost_results']}  -> {path}")
    return 0 if figures["lost_results"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
