"""Purge benchmark: botfleet's batched database stages vs one bulk DELETE, on the same data.

    python -m bench.purge            # 1,000,000 bots (40 % expired, 10 % recently deleted),
                                     # 3,000,000 results + 50,000 orphaned results
    BENCH_SCALE=small python -m bench.purge   # 1/100 of that, one round
    python -m bench.purge --server tuned      # stock|tuned; default both, 3 rounds each

Each round runs both contenders on a stock server (as configured) and on a tuned one
(``bench/server_settings.py``: max_wal_size, checkpoint timing, set with ALTER SYSTEM and a
reload, restored afterwards); odd rounds flip the order of the servers and of the contenders.

Each contender gets a fresh copy of one template database. While it runs, a separate writer process
updates a random live bot and inserts a result every 10 ms; its latency is reported. Afterwards both
copies must hold exactly the same seeded rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench import pgtools, workers
from bench.report import cleanup_service, scale, write_result
from bench.report import rounds as bench_rounds
from bench.seed import SeedSpec
from bench.server_settings import SERVERS, TUNED, current, server_settings

CONTENDER_APP = "botfleet"  # application_name of botfleet's sessions (store/session.py)


def spec_for(scale_name: str) -> SeedSpec:
    div = 100 if scale_name == "small" else 1
    return SeedSpec(
        bots=1_000_000 // div,
        results_per_bot=3,
        expired_fraction=0.4,
        recent_deleted_fraction=0.1,
        orphaned_results=50_000 // div,
        seed=7,
    )


async def baseline(url: str) -> dict[str, Any]:
    """One transaction, three bulk DELETEs: the fastest thing PostgreSQL can do, lock time aside."""
    cutoff = datetime.now(UTC) - timedelta(days=7)
    conn = await asyncpg.connect(url, server_settings={"application_name": CONTENDER_APP})
    try:
        started = time.perf_counter()
        async with conn.transaction():
            r1 = await conn.execute(
                "DELETE FROM results WHERE bot_id IN "
                "(SELECT id FROM bots WHERE deleted_at IS NOT NULL AND deleted_at < $1)",
                cutoff,
            )
            r2 = await conn.execute(
                "DELETE FROM bots WHERE deleted_at IS NOT NULL AND deleted_at < $1", cutoff
            )
            r3 = await conn.execute(
                "DELETE FROM results r"
                " WHERE NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id)"
            )
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    rows = sum(int(r.split()[-1]) for r in (r1, r2, r3))
    return {"seconds": seconds, "rows": rows}


def botfleet_in_subprocess(url: str) -> dict[str, Any]:
    """botfleet's real cleanup run (database stages), in its own process so its RSS is its own."""
    return workers.call(botfleet_worker, url)


def botfleet_worker(url: str) -> dict[str, Any]:
    return asyncio.run(_botfleet_worker(url))


async def _botfleet_worker(url: str) -> dict[str, Any]:
    import resource

    marks: dict[str, float] = {}
    batch_ms: dict[str, list[float]] = {}

    async def planned() -> None:  # called once selection is done, before the first batch
        marks["planned"] = marks["last"] = time.perf_counter()

    def progress(kind: str, done: int, total: int) -> None:  # after every batch
        now = time.perf_counter()
        batch_ms.setdefault(kind, []).append((now - marks.get("last", now)) * 1000)
        marks["last"] = now

    async with cleanup_service(url) as service:
        started, cpu_started = time.perf_counter(), time.process_time()
        report = await service.run(
            trigger="cli",
            actor="cli:bench",
            dry_run=False,
            only=["bots", "orphaned_results"],
            pause_hook=planned,
            progress=progress,
        )
        seconds = time.perf_counter() - started
        run_cpu = time.process_time() - cpu_started
    res = report["resources"]
    rows = sum(res[k]["deleted"] for k in ("bots", "bot_results", "orphaned_results"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_mb = usage.ru_maxrss / 1024
    return {
        "seconds": seconds,
        "rows": rows,
        "status": report["status"],
        "peak_rss_mb": round(rss_mb, 1),
        # The worker's own CPU (Python, SQLAlchemy, asyncpg): on 2 cores it competes with
        # PostgreSQL's backends for the same time.
        # Imports excluded: they were paid once by bench.workers' forkserver.
        "client_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "run_cpu_seconds": round(run_cpu, 3),  # the run's own
        "errors": report["errors"],
        "settings": {
            "CLEANUP_BATCH_SIZE": service.settings.cleanup_batch_size,
            "CLEANUP_DB_CONCURRENCY": service.settings.cleanup_db_concurrency,
        },
        # Where the time went: selection (plan) up to the first batch, then each stage's batches
        # (a batch's time includes the checkpoint before it: the lock check, one round trip).
        "plan_seconds": round(marks.get("planned", started) - started, 3),
        "batches": {
            kind: {
                "count": len(ms),
                "total_s": round(sum(ms) / 1000, 3),
                "p50_ms": round(sorted(ms)[len(ms) // 2], 1),
                "max_ms": round(max(ms), 1),
            }
            for kind, ms in batch_ms.items()
            if ms
        },
    }


async def _wal_and_checkpoints(url: str) -> tuple[str, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT pg_current_wal_lsn()::text,"
            " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)"
        )
        return str(row[0]), int(row[1])
    finally:
        await conn.close()


async def _wal_bytes_since(url: str, lsn: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", lsn
            )
        )
    finally:
        await conn.close()


async def measure(name: str, url: str, spec: SeedSpec, seeded_max_id: int) -> dict[str, Any]:
    lsn, checkpoints = await _wal_and_checkpoints(url)
    with tempfile.TemporaryDirectory() as tmp:
        writer = pgtools.start_writer(url, spec, Path(tmp) / "writer.json")
        try:
            async with pgtools.TxnWatcher(url, CONTENDER_APP) as watcher:
                if name == "baseline":
                    result = await baseline(url)
                else:
                    result = await asyncio.to_thread(botfleet_in_subprocess, url)
        finally:
            latency = writer.stop()
    # The server's WAL and checkpoints are the whole server's: other work adds to them (summarise
    # keeps the least WAL of the rounds).
    result["wal_bytes"] = await _wal_bytes_since(url, lsn)
    result["wal_bytes_per_row"] = round(result["wal_bytes"] / max(result["rows"], 1), 1)
    result["checkpoints"] = (await _wal_and_checkpoints(url))[1] - checkpoints
    result["longest_txn_ms"] = round(watcher.longest_ms, 1)
    result["longest_txn_query"] = watcher.longest_query
    result["backend_cpu_seconds"] = watcher.backend_cpu_seconds
    result["backends"] = watcher.backends
    # The contender's CPU in all, server and client: what the rows cost whatever the load.
    result["cpu_seconds"] = round(
        result["backend_cpu_seconds"] + result.get("run_cpu_seconds", 0.0), 3
    )
    result["writer"] = latency
    result["rows_per_s"] = round(result["rows"] / result["seconds"], 1)
    result["fingerprint"] = await pgtools.fingerprint(url, seeded_max_id)
    result["load_1m"] = os.getloadavg()[0]
    return result


def run_contender(name: str, template: str, spec: SeedSpec, seeded_max: int) -> dict[str, Any]:
    database = pgtools.bench_db(f"purge_{name}")
    url = pgtools.copy_database(template, database)
    try:
        result = asyncio.run(measure(name, url, spec, seeded_max))
    finally:
        pgtools.drop_database(database)
    shown = {k: v for k, v in result.items() if k not in ("fingerprint", "longest_txn_query")}
    print(f"    {name}: {json.dumps(shown)}", flush=True)
    return result


def summarise(runs: list[dict[str, Any]], settings_seen: dict[str, str]) -> dict[str, Any]:
    """One server's rounds: medians, the per-round ratios, and the worst of the limits."""
    ratios = [r["botfleet"]["rows_per_s"] / r["baseline"]["rows_per_s"] for r in runs]
    bots = [r["botfleet"] for r in runs]
    base = [r["baseline"] for r in runs]

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return round(float(statistics.median(row[key] for row in rows)), 3)

    return {
        "settings": settings_seen,
        "ratio_rows_per_s": round(statistics.median(ratios), 3),
        "ratio_each_round": [round(x, 3) for x in ratios],
        "baseline_rows_per_s": med(base, "rows_per_s"),
        "botfleet_rows_per_s": med(bots, "rows_per_s"),
        "baseline_seconds": med(base, "seconds"),
        "botfleet_seconds": med(bots, "seconds"),
        "plan_seconds": med(bots, "plan_seconds"),
        "writer_p99_ms": round(statistics.median(b["writer"]["p99_ms"] for b in bots), 2),
        "writer_p99_ms_worst": max(b["writer"]["p99_ms"] for b in bots),
        "baseline_writer_p99_ms": round(statistics.median(b["writer"]["p99_ms"] for b in base), 2),
        "longest_txn_ms": max(b["longest_txn_ms"] for b in bots),
        "longest_txn_query": max(bots, key=lambda b: b["longest_txn_ms"])["longest_txn_query"],
        "peak_rss_mb": max(b["peak_rss_mb"] for b in bots),
        # The server's WAL position moves with other work too, which only adds: the least of
        # the rounds is the closest to the contender's own.
        "botfleet_wal_bytes_per_row": min(b["wal_bytes_per_row"] for b in bots),
        "baseline_wal_bytes_per_row": min(b["wal_bytes_per_row"] for b in base),
        # CPU (server backends + botfleet's own process during its run), which the machine's
        # load moves far less than wall-clock time: rows per CPU-second, botfleet over bulk.
        "botfleet_cpu_seconds": med(bots, "cpu_seconds"),
        "botfleet_backend_cpu_seconds": med(bots, "backend_cpu_seconds"),
        "botfleet_run_cpu_seconds": med(bots, "run_cpu_seconds"),
        "baseline_cpu_seconds": med(base, "cpu_seconds"),
        "ratio_rows_per_cpu_second": round(
            statistics.median(
                r["baseline"]["cpu_seconds"] / r["botfleet"]["cpu_seconds"] for r in runs
            ),
            3,
        ),
        "botfleet_checkpoints": [b["checkpoints"] for b in bots],
        "baseline_checkpoints": [b["checkpoints"] for b in base],
        "same_rows_left": all(
            r["baseline"]["fingerprint"] == r["botfleet"]["fingerprint"] for r in runs
        ),
        "rounds": runs,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.purge", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--server",
        choices=[*SERVERS, "both"],
        default="both",
        help="stock: as configured; tuned: server_settings.TUNED for the run (default: both)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=bench_rounds(3),
        help="rounds per server, the contenders' order flipped every other round (BENCH_ROUNDS)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    servers = list(SERVERS) if args.server == "both" else [args.server]
    scale_name = scale()
    spec = spec_for(scale_name)
    template = pgtools.bench_db(f"purge_{scale_name}")
    print(f"seeding template {template}: {spec}", flush=True)
    counts = pgtools.make_template(template, spec)
    seeded_max = asyncio.run(pgtools.max_result_id(pgtools.db_url(template)))
    runs: dict[str, list[dict[str, Any]]] = {server: [] for server in servers}
    seen: dict[str, dict[str, str]] = {}
    loads = [os.getloadavg()[0]]
    try:
        for round_no in range(args.rounds):
            flip = round_no % 2 == 1  # odd rounds: botfleet first, the servers the other way round
            for server in reversed(servers) if flip else servers:
                with server_settings(pgtools.ADMIN_URL, SERVERS[server]) as applied:
                    seen[server] = applied or asyncio.run(current(pgtools.ADMIN_URL, list(TUNED)))
                    print(f"round {round_no + 1}, {server} server {seen[server]}", flush=True)
                    order = ("botfleet", "baseline") if flip else ("baseline", "botfleet")
                    runs[server].append(
                        {name: run_contender(name, template, spec, seeded_max) for name in order}
                    )
                loads.append(os.getloadavg()[0])
    finally:
        pgtools.drop_database(template)
    summaries = {server: summarise(runs[server], seen[server]) for server in servers}
    first = summaries.get("stock") or summaries[servers[0]]
    summary = {
        "sizes": {**counts, "spec": spec.__dict__ | {"now": None}},
        "rounds_per_server": args.rounds,
        "load_average_1m": loads,
        **summaries,
        # The figures before issue 17, kept at the top for bench.alternate: the stock server's.
        "ratio_rows_per_s": first["ratio_rows_per_s"],
        "writer_p99_ms": first["writer_p99_ms"],
        "longest_txn_ms": first["longest_txn_ms"],
        "peak_rss_mb": first["peak_rss_mb"],
        "same_rows_left": all(s["same_rows_left"] for s in summaries.values()),
    }
    write_result("purge", summary)
    for server, s in summaries.items():
        print(
            f"{server}: ratio botfleet/baseline rows/s {s['ratio_rows_per_s']} (per round "
            f"{s['ratio_each_round']})  writer p99 {s['writer_p99_ms']} ms (baseline "
            f"{s['baseline_writer_p99_ms']} ms)  longest txn {s['longest_txn_ms']} ms  "
            f"peak RSS {s['peak_rss_mb']} MB  WAL/row {s['botfleet_wal_bytes_per_row']} B "
            f"(baseline {s['baseline_wal_bytes_per_row']} B)  same rows left {s['same_rows_left']}"
        )
    return 0 if summary["same_rows_left"] else 1


if __name__ == "__main__":
    sys.exit(main())
