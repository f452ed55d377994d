"""How the purge and the plan grow with the store: 250k and 1M bots with 3 results each.

    python -m bench.scaling                     # 250,000 and 1,000,000 bots (make bench)
    BENCH_SCALE=large python -m bench.scaling   # and 4,000,000 (make bench-large)
    BENCH_SCALE=small python -m bench.scaling   # 2,500 and 10,000: a quick pass

Every size is the purge bench's store (40 % of the bots expired, 10 % recently deleted, an
orphaned result per 20 bots), seeded once as a template. Each round copies every template afresh
and runs, in processes of their own, a dry run (the plan: every database stage counted) and then
botfleet's real purge (stages ``bots`` + ``orphaned_results``) — no writer beside them, so what
grows is botfleet's own cost. The rounds walk the sizes up, then down. The server is the tuned one
of ``bench/server_settings.py`` (``--server stock`` for the server as configured): at stock
settings the checkpoints come every 1 GB of WAL, so a large purge pays for full-page writes that
a small one never meets. WAL bytes are ``pg_current_wal_lsn()`` before and after the purge (the
whole server's: other work on it adds a little).

``purge_linearity`` is the largest size's purge seconds over the smallest size's scaled by the
rows each deleted: 1.0 is linear; the goal is within 15 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from typing import Any

import asyncpg

from bench import pgtools, workers
from bench.purge import CONTENDER_APP, _wal_bytes_since, botfleet_in_subprocess
from bench.report import cleanup_service, scale, write_result
from bench.report import rounds as bench_rounds
from bench.seed import SeedSpec
from bench.server_settings import SERVERS, server_settings

SIZES = {
    "small": (2_500, 10_000),
    "full": (250_000, 1_000_000),
    "large": (250_000, 1_000_000, 4_000_000),
}


def spec_for(bots: int) -> SeedSpec:
    return SeedSpec(
        bots=bots,
        results_per_bot=3,
        expired_fraction=0.4,
        recent_deleted_fraction=0.1,
        orphaned_results=bots // 20,
        seed=7,
    )


async def _plan_worker(url: str) -> dict[str, Any]:
    async with cleanup_service(url) as service:
        started = time.perf_counter()
        report = await service.run(trigger="cli", actor="cli:bench", dry_run=True)
        seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "found": {k: report["resources"][k]["found"] for k in ("bots", "bot_results")},
    }


def plan_in_subprocess(url: str) -> dict[str, Any]:
    return workers.call(plan_worker, url)


def plan_worker(url: str) -> dict[str, Any]:
    return asyncio.run(_plan_worker(url))


async def _store_counters(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT pg_current_wal_lsn()::text AS lsn,
                      (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS ckpt,
                      blks_read, blks_hit
               FROM pg_stat_database WHERE datname = current_database()"""
        )
        return dict(row)
    finally:
        await conn.close()


async def _purge_measured(url: str) -> dict[str, Any]:
    """botfleet's purge, with the WAL it wrote, the checkpoints meanwhile, its backends' CPU and
    the blocks they read from outside shared_buffers (the copy's own counters: nothing else
    touches it)."""
    before = await _store_counters(url)
    async with pgtools.TxnWatcher(url, CONTENDER_APP) as watcher:
        result = await asyncio.to_thread(botfleet_in_subprocess, url)
    await asyncio.sleep(1.0)  # backends' statistics are flushed to shared memory within 1 s
    result["wal_bytes"] = await _wal_bytes_since(url, before["lsn"])
    after = await _store_counters(url)
    result["checkpoints"] = after["ckpt"] - before["ckpt"]
    result["blocks_read"] = after["blks_read"] - before["blks_read"]
    result["blocks_hit"] = after["blks_hit"] - before["blks_hit"]
    result["cpu_seconds"] = round(watcher.backend_cpu_seconds + result["run_cpu_seconds"], 3)
    return result


def one_size(template: str, bots: int) -> dict[str, Any]:
    database = pgtools.bench_db(f"scaling_{bots}")
    url = pgtools.copy_database(template, database)
    try:
        plan = plan_in_subprocess(url)
        purge = asyncio.run(_purge_measured(url))
    finally:
        pgtools.drop_database(database)
    if purge["status"] != "succeeded":
        raise RuntimeError(f"purge of {bots} bots: {purge['status']} {purge['errors']}")
    figures = {
        "plan_seconds": plan["seconds"],
        "plan_peak_rss_mb": plan["peak_rss_mb"],
        "purge_seconds": round(purge["seconds"], 3),
        "purge_rows": purge["rows"],
        "purge_us_per_row": round(purge["seconds"] / purge["rows"] * 1e6, 3),
        "purge_plan_seconds": purge["plan_seconds"],
        "purge_peak_rss_mb": purge["peak_rss_mb"],
        "wal_bytes_per_row": round(purge["wal_bytes"] / purge["rows"], 1),
        "checkpoints": purge["checkpoints"],
        "cpu_us_per_row": round(purge["cpu_seconds"] / purge["rows"] * 1e6, 3),
        "blocks_read_per_row": round(purge["blocks_read"] / purge["rows"], 3),
        "buffer_hit_ratio": round(
            purge["blocks_hit"] / max(1, purge["blocks_hit"] + purge["blocks_read"]), 4
        ),
        "batches": purge["batches"],
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(f"  {bots:>9} bots: {json.dumps({k: v for k, v in figures.items() if k != 'batches'})}")
    return figures


def summarise(bots: int, runs: list[dict[str, Any]], seeded: dict[str, Any]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(float(statistics.median(run[key] for run in runs)), 3)

    return {
        "bots": bots,
        "seeded": seeded,
        "purge_rows": runs[0]["purge_rows"],
        "purge_seconds": med("purge_seconds"),
        "purge_us_per_row": med("purge_us_per_row"),
        "plan_seconds": med("plan_seconds"),
        "peak_rss_mb": max(max(r["purge_peak_rss_mb"], r["plan_peak_rss_mb"]) for r in runs),
        "purge_peak_rss_mb": max(r["purge_peak_rss_mb"] for r in runs),
        "plan_peak_rss_mb": max(r["plan_peak_rss_mb"] for r in runs),
        # The server's WAL position moves with other work too, which only adds: the least of the
        # rounds is the closest to the purge's own.
        "wal_bytes_per_row": min(r["wal_bytes_per_row"] for r in runs),
        "checkpoints": [r["checkpoints"] for r in runs],
        "cpu_us_per_row": med("cpu_us_per_row"),
        "blocks_read_per_row": med("blocks_read_per_row"),
        "buffer_hit_ratio": med("buffer_hit_ratio"),
        "each_round": runs,
    }


def linearity(smallest: dict[str, Any], largest: dict[str, Any]) -> float:
    """The largest purge's seconds over the smallest's scaled linearly by rows (1.0: linear)."""
    expected = smallest["purge_seconds"] * largest["purge_rows"] / smallest["purge_rows"]
    return round(float(largest["purge_seconds"]) / float(expected), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--server", choices=list(SERVERS), default="tuned")
    parser.add_argument("--rounds", type=int, default=bench_rounds(3))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sizes = SIZES[scale()]
    templates = {bots: pgtools.bench_db(f"scaling_template_{bots}") for bots in sizes}
    seeded: dict[int, dict[str, Any]] = {}
    runs: dict[int, list[dict[str, Any]]] = {bots: [] for bots in sizes}
    loads = [round(os.getloadavg()[0], 2)]
    try:
        for bots in sizes:
            started = time.perf_counter()
            seeded[bots] = pgtools.make_template(templates[bots], spec_for(bots))
            seeded[bots]["seconds"] = round(time.perf_counter() - started, 1)
            print(f"seeded {bots} bots: {seeded[bots]}", flush=True)
        with server_settings(pgtools.ADMIN_URL, SERVERS[args.server]) as applied:
            for round_no in range(args.rounds):
                order = sizes if round_no % 2 == 0 else tuple(reversed(sizes))
                print(f"round {round_no + 1} ({args.server} server {applied})", flush=True)
                for bots in order:
                    runs[bots].append(one_size(templates[bots], bots))
                loads.append(round(os.getloadavg()[0], 2))
    finally:
        for template in templates.values():
            pgtools.drop_database(template)
    by_size = [summarise(bots, runs[bots], seeded[bots]) for bots in sizes]
    figures = {
        "server": args.server,
        "server_settings": SERVERS[args.server],
        "rounds": args.rounds,
        "sizes": by_size,
        "purge_linearity": linearity(by_size[0], by_size[-1]),
        # The same in CPU per row (server backends + botfleet's process), which the machine's
        # load moves less than wall-clock time.
        "purge_cpu_linearity": round(
            by_size[-1]["cpu_us_per_row"] / by_size[0]["cpu_us_per_row"], 3
        ),
        "plan_growth": round(by_size[-1]["plan_seconds"] / by_size[0]["plan_seconds"], 3),
        "rss_growth": round(by_size[-1]["peak_rss_mb"] / by_size[0]["peak_rss_mb"], 3),
        "rows_growth": round(by_size[-1]["purge_rows"] / by_size[0]["purge_rows"], 3),
        "load_average_1m": loads,
    }
    write_result("scaling", figures)
    for size in by_size:
        print(
            f"{size['bots']:>9} bots: purge {size['purge_seconds']} s "
            f"({size['purge_us_per_row']} µs/row), plan {size['plan_seconds']} s, "
            f"peak RSS {size['peak_rss_mb']} MB, WAL {size['wal_bytes_per_row']} B/row, "
            f"CPU {size['cpu_us_per_row']} µs/row, buffer hits {size['buffer_hit_ratio']}"
        )
    print(
        f"purge linearity (largest vs linear from smallest): {figures['purge_linearity']} "
        f"(in CPU per row {figures['purge_cpu_linearity']}); "
        f"plan x{figures['plan_growth']}, RSS x{figures['rss_growth']} "
        f"for rows x{figures['rows_growth']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
