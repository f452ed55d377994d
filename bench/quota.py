"""Quota benchmark: botfleet's ``results_over_quota`` stage vs one hand-written row_number()
DELETE, on the same data (PostgreSQL).

    python -m bench.quota                   # 10,000 live bots x 300 results (3,000,000 rows),
                                            # cut to the newest 100 per bot
    BENCH_SCALE=small python -m bench.quota # 1/100 of the bots
    BENCH_ROUNDS=5 python -m bench.quota    # rounds (default 3), the order alternating: medians
    BENCH_DB_PREFIX=bench18_ python -m bench.quota  # the databases' names (default botfleet_bench_)

Each contender gets a fresh copy of one template database while a separate writer process
updates a random live bot and inserts a result every 10 ms (its latency is reported). Both rank
only the seeded results (``id <= seeded max``: the writer's new rows are not theirs to judge),
and both must leave every bot at most its newest 100 of them. (The copies need not end
equal: botfleet's plan bounds its ranking by the newest id at selection, when the writer has
already added a few rows, which push a few more seeded rows over; the statement is bounded by
the seeded ids.) Also measured: the dry-run plan of
the quota, and of a budget (``CLEANUP_RESULTS_BUDGET`` at a third of the table), each alone.
Each round runs all four, baseline and botfleet in turn (who goes first alternates: the second
of a pair runs on a warmer cache); the summary is the rounds' medians, with the machine's load
average at each measurement (other work on a shared machine moves every figure).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import pgtools, workers
from bench.report import cleanup_service, scale, write_result
from bench.report import rounds as bench_rounds
from bench.seed import SeedSpec

CONTENDER_APP = "botfleet"
KEEP = 100


def spec_for(scale_name: str) -> SeedSpec:
    div = 100 if scale_name == "small" else 1
    return SeedSpec(bots=10_000 // div, results_per_bot=300, expired_fraction=0.0, seed=11)


async def baseline(url: str, max_id: int) -> dict[str, Any]:
    """The issue's statement, bounded to the seeded rows like botfleet's plan."""
    conn = await asyncpg.connect(url, server_settings={"application_name": CONTENDER_APP})
    try:
        started = time.perf_counter()
        status = await conn.execute(
            "DELETE FROM results WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER"
            " (PARTITION BY bot_id ORDER BY created_at DESC) AS n FROM results"
            " WHERE id <= $1) s WHERE n > $2)",
            max_id,
            KEEP,
        )
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return {"seconds": seconds, "rows": int(status.split()[-1])}


def worker(url: str, mode: str) -> dict[str, Any]:
    """One run in a fresh process, so its RSS is its own."""
    return workers.call(run_in_worker, url, mode)


def run_in_worker(url: str, mode: str) -> dict[str, Any]:
    return asyncio.run(_worker(url, mode))


async def _worker(url: str, mode: str) -> dict[str, Any]:
    """``real``: the quota stage run for real; ``plan-quota`` / ``plan-budget``: a dry run."""
    import resource

    marks: dict[str, float] = {}

    async def planned() -> None:
        marks["planned"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        overrides: dict[str, Any] = {"cleanup_policy_file": policy}
        if mode == "plan-budget":
            policy.write_text("rules:\n  - match: {}\n    min_results_per_bot: 10\n")
            conn = await asyncpg.connect(url)
            rows = int(await conn.fetchval("SELECT count(*) FROM results"))
            await conn.close()
            overrides["cleanup_results_budget"] = str(rows // 3)
        else:
            policy.write_text(f"rules:\n  - match: {{}}\n    max_results_per_bot: {KEEP}\n")
        async with cleanup_service(url, **overrides) as service:
            started = time.perf_counter()
            report = await service.run(
                trigger="cli",
                actor="cli:bench",
                dry_run=mode != "real",
                only=["results_over_quota"],
                pause_hook=planned,
            )
            seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    entry = report["resources"]["results_over_quota"]
    return {
        "seconds": seconds,
        "plan_seconds": round(marks.get("planned", started) - started, 3),
        "rows": entry["deleted"],
        "found": entry["found"],
        "status": report["status"],
        "errors": report["errors"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "budget": entry.get("budget"),
    }


async def measure(name: str, url: str, spec: SeedSpec, max_id: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        writer = pgtools.start_writer(url, spec, Path(tmp) / "writer.json")
        try:
            async with pgtools.TxnWatcher(url, CONTENDER_APP) as watcher:
                if name == "baseline":
                    result = await baseline(url, max_id)
                else:
                    result = await asyncio.to_thread(worker, url, "real")
        finally:
            latency = writer.stop()
    result["longest_txn_ms"] = round(watcher.longest_ms, 1)
    result["longest_txn_query"] = watcher.longest_query
    result["writer"] = latency
    result["rows_per_s"] = round(result["rows"] / result["seconds"], 1)
    result["bots_over_quota_after"] = await over_quota(url, max_id)
    return result


async def over_quota(url: str, max_id: int) -> int:
    """Bots still holding more than KEEP seeded results."""
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM (SELECT bot_id FROM results WHERE id <= $1"
                " GROUP BY bot_id HAVING count(*) > $2) s",
                max_id,
                KEEP,
            )
        )
    finally:
        await conn.close()


def load() -> float:
    return round(os.getloadavg()[0], 2)


def one(template: str, mode: str, spec: SeedSpec, max_id: int) -> dict[str, Any]:
    """One measurement on a fresh copy of the template, with the load before and after."""
    name = pgtools.bench_db(f"quota_{mode.replace('-', '_')}")
    url = pgtools.copy_database(template, name)
    before = load()
    try:
        if mode.startswith("plan"):
            result = worker(url, mode)
        else:
            result = asyncio.run(measure(mode, url, spec, max_id))
    finally:
        pgtools.drop_database(name)
    result["load"] = [before, load()]
    print(f"  {mode}: {json.dumps(result)}", flush=True)
    return result


def median(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in rounds:
        value: Any = r
        for key in path:
            value = value[key]
        values.append(float(value))
    return round(statistics.median(values), 3)


def main() -> int:
    scale_name = scale()
    spec = spec_for(scale_name)
    rounds = bench_rounds(3)
    template = pgtools.bench_db(f"quota_{scale_name}")
    print(f"seeding template {template}: {spec}", flush=True)
    counts = pgtools.make_template(template, spec)
    max_id = asyncio.run(pgtools.max_result_id(pgtools.db_url(template)))
    done: list[dict[str, Any]] = []
    try:
        for n in range(rounds):
            order = ("baseline", "botfleet") if n % 2 == 0 else ("botfleet", "baseline")
            print(f"round {n + 1}: plans, then {' then '.join(order)}", flush=True)
            result: dict[str, Any] = {
                mode: one(template, mode, spec, max_id) for mode in ("plan-quota", "plan-budget")
            }
            result |= {name: one(template, name, spec, max_id) for name in order}
            result["order"] = list(order)
            result["ratio"] = round(
                result["botfleet"]["rows_per_s"] / result["baseline"]["rows_per_s"], 3
            )
            result["within_quota"] = (
                result["baseline"]["bots_over_quota_after"]
                == result["botfleet"]["bots_over_quota_after"]
                == 0
            )
            print(f"round {n + 1}: ratio {result['ratio']}", flush=True)
            done.append(result)
    finally:
        pgtools.drop_database(template)
    same = all(r["within_quota"] for r in done)
    loads = [
        x
        for r in done
        for m in ("plan-quota", "plan-budget", "baseline", "botfleet")
        for x in r[m]["load"]
    ]
    summary = {
        "sizes": {**counts, "spec": spec.__dict__ | {"now": None}, "keep": KEEP},
        "rounds": done,
        "ratios": [r["ratio"] for r in done],
        "ratio_rows_per_s": median(done, "ratio"),
        "baseline_rows_per_s": median(done, "baseline", "rows_per_s"),
        "botfleet_rows_per_s": median(done, "botfleet", "rows_per_s"),
        "writer_p99_ms": median(done, "botfleet", "writer", "p99_ms"),
        "baseline_writer_p99_ms": median(done, "baseline", "writer", "p99_ms"),
        "longest_txn_ms": max(r["botfleet"]["longest_txn_ms"] for r in done),
        "plan_quota_seconds": median(done, "plan-quota", "plan_seconds"),
        "plan_budget_seconds": median(done, "plan-budget", "plan_seconds"),
        "peak_rss_mb": max(
            r[m]["peak_rss_mb"] for r in done for m in ("botfleet", "plan-quota", "plan-budget")
        ),
        "load_range": [min(loads), max(loads)],
        "every_bot_within_quota": same,
    }
    write_result("quota", summary)
    print(
        f"medians of {rounds} rounds: ratio botfleet/baseline rows/s {summary['ratio_rows_per_s']}"
        f" (per round {summary['ratios']})  writer p99: {summary['writer_p99_ms']} ms (baseline"
        f" {summary['baseline_writer_p99_ms']} ms)  longest txn (max): {summary['longest_txn_ms']}"
        f" ms  plan: quota {summary['plan_quota_seconds']} s, budget"
        f" {summary['plan_budget_seconds']} s  peak RSS: {summary['peak_rss_mb']} MB"
        f"  load {summary['load_range']}  every bot within its quota: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
