"""PostgreSQL plumbing for the benchmarks: template stores, a live-traffic writer, a txn watcher.

Every contender runs on a fresh copy of the same template database (``CREATE DATABASE … TEMPLATE``),
so baseline and botfleet see the same rows in the same physical order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.seed import SeedSpec, bot_uuid, group_of, seed

ADMIN_URL = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# Every database a benchmark makes starts with this, so runs beside each other on one server
# (BENCH_DB_PREFIX=bench17_) neither collide nor drop each other's stores.
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "botfleet_bench_")


def bench_db(name: str) -> str:
    return DB_PREFIX + name


def bench_database_name(kind: str) -> str:
    """A throw-away database's name: :func:`bench_db` of the benchmark and a random suffix."""
    return bench_db(f"{kind}_{secrets.token_hex(4)}")


def db_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def admin(sql: str) -> None:
    asyncio.run(_admin(sql))


def drop_database(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_template(name: str, spec: SeedSpec) -> dict[str, int]:
    """A migrated, seeded database to copy from; built once per benchmark run."""
    # Imported here: the writer process imports this module and needs none of botfleet.
    from botfleet.config import Settings
    from botfleet.store.migrate import upgrade_sync

    drop_database(name)
    admin(f'CREATE DATABASE "{name}"')
    url = db_url(name)
    upgrade_sync(Settings(database_url=url, admin_token="x" * 40))  # type: ignore[call-arg]
    counts = seed(url, spec)
    asyncio.run(_vacuum(url))
    return counts


async def _vacuum(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM (ANALYZE) bots")
        await conn.execute("VACUUM (ANALYZE) results")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def copy_database(template: str, name: str) -> str:
    drop_database(name)
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    asyncio.run(_checkpoint(db_url(name)))
    return db_url(name)


async def _checkpoint(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def fingerprint(url: str, max_result_id: int) -> dict[str, Any]:
    """What the seeded rows look like now: counts and digests of the surviving ids."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM bots) AS bots,
                      (SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM bots) AS bots_md5,
                      (SELECT count(*) FROM results WHERE id <= $1) AS results,
                      (SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM results
                        WHERE id <= $1) AS results_md5""",
            max_result_id,
        )
        return dict(row)
    finally:
        await conn.close()


async def max_result_id(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM results"))
    finally:
        await conn.close()


# --- live traffic ------------------------------------------------------------------------------
@dataclass
class Writer:
    """A separate process that updates a live bot and inserts a result every 10 ms."""

    proc: subprocess.Popen[str]
    out: Path

    def stop(self) -> dict[str, float]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        data = json.loads(self.out.read_text())
        self.out.unlink(missing_ok=True)
        return data  # type: ignore[no-any-return]


def start_writer(url: str, spec: SeedSpec, out: Path, period_ms: float = 10.0) -> Writer:
    args = [
        sys.executable,
        "-m",
        "bench.pgtools",
        "writer",
        url,
        str(out),
        str(spec.bots),
        str(spec.expired_fraction),
        str(spec.recent_deleted_fraction),
        str(spec.seed),
        str(period_ms),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready": connected and warmed up
    return Writer(proc, out)


async def _writer_main(
    url: str, out: str, bots: int, expired: float, recent: float, seed_: int, period_ms: float
) -> None:
    spec = SeedSpec(
        bots=bots,
        results_per_bot=0,
        expired_fraction=expired,
        recent_deleted_fraction=recent,
        seed=seed_,
    )
    live = [g for g in range(bots) if group_of(g, spec) == "live"]
    rng = random.Random(seed_)
    conn = await asyncpg.connect(url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    latencies: list[float] = []
    update = await conn.prepare("UPDATE bots SET updated_at = now() WHERE id = $1")
    insert = await conn.prepare(
        "INSERT INTO results (bot_id, created_at, data) VALUES ($1, now(), '{\"w\": 1}'::jsonb)"
    )
    print("ready", flush=True)
    period = period_ms / 1000
    next_at = time.perf_counter()
    while not stop.is_set():
        bot = bot_uuid(seed_, rng.choice(live))
        t0 = time.perf_counter()
        async with conn.transaction():
            await update.fetch(bot)
            await insert.fetch(bot)
        latencies.append((time.perf_counter() - t0) * 1000)
        next_at += period
        delay = next_at - time.perf_counter()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        else:
            next_at = time.perf_counter()
    await conn.close()
    await asyncio.to_thread(Path(out).write_text, json.dumps(latency_summary(latencies)))


def latency_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {
        "count": len(ordered),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1], 2),
    }


# --- longest transaction ----------------------------------------------------------------------
class TxnWatcher:
    """Samples pg_stat_activity every few ms: the longest open transaction of the contender, and
    the CPU time its server backends used (``/proc/<pid>/stat``, read while each is alive: the
    server runs on this machine). CPU time is what stays put when the shared machine is loaded,
    while wall-clock time moves with every other process."""

    def __init__(self, url: str, application_name: str, every: float = 0.005) -> None:
        self.url = url
        self.app = application_name
        self.every = every
        self.longest_ms = 0.0
        self.longest_query = ""  # the statement seen last in that transaction
        # pid -> utime + stime at its last sample: a backend's whole life is the contender's,
        # which opened it after the watcher started.
        self._cpu_ticks: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def backend_cpu_seconds(self) -> float:
        ticks = sum(self._cpu_ticks.values())
        return round(ticks / os.sysconf("SC_CLK_TCK"), 3)

    @property
    def backends(self) -> int:
        return len(self._cpu_ticks)

    async def __aenter__(self) -> TxnWatcher:
        self._conn = await asyncpg.connect(self.url)
        self._task = asyncio.create_task(self._loop())
        return self

    def _sample_cpu(self, pids: list[int]) -> None:
        for pid in pids:
            ticks = _cpu_ticks(pid)
            if ticks is not None:
                self._cpu_ticks[pid] = ticks

    async def _loop(self) -> None:
        query = await self._conn.prepare(
            """SELECT extract(epoch FROM clock_timestamp() - xact_start) * 1000, state, query, pid
               FROM pg_stat_activity
               WHERE datname = current_database() AND application_name = $1
               ORDER BY xact_start NULLS LAST"""
        )
        while not self._stop.is_set():
            rows = await query.fetch(self.app)
            self._sample_cpu([int(row[3]) for row in rows])
            row = rows[0] if rows and rows[0][0] is not None else None
            if row is not None and float(row[0]) > self.longest_ms:
                self.longest_ms = float(row[0])
                self.longest_query = f"{row[1]}: {' '.join(str(row[2]).split())[:300]}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task:
            await self._task
        await self._conn.close()


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process, in clock ticks; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after "pid (comm)"


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "writer":
    a = sys.argv[2:]
    asyncio.run(
        _writer_main(a[0], a[1], int(a[2]), float(a[3]), float(a[4]), int(a[5]), float(a[6]))
    )
