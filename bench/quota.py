"""Quota benchmark: botfleet's ``results_over_quota`` stage vs one hand-written row_number()
DELETE, on the same data (PostgreSQL).

    python -m bench.quota                   # 10,000 live bots x 300 results (3,000,000 rows),
                                            # cut to the newest 100 per bot
    BENCH_SCALE=small python -m bench.quota # 1/20 of the bots

Each contender gets a fresh copy of one template database while a separate writer process
updates a random live bot and inserts a result every 10 ms (its latency is reported). Both rank
only the seeded results (``id <= seeded max``: the writer's new rows are not theirs to judge),
and both must leave every bot at most its newest 100 of them. (The copies need not end
equal: botfleet's plan bounds its ranking by the newest id at selection, when the writer has
already added a few rows, which push a few more seeded rows over; the statement is bounded by
the seeded ids.) Also measured: the dry-run plan of
the quota, and of a budget (``CLEANUP_RESULTS_BUDGET`` at a third of the table), each alone.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import pgtools
from bench.report import cleanup_service, scale, write_result
from bench.seed import SeedSpec

CONTENDER_APP = "botfleet"
KEEP = 100


def spec_for(scale_name: str) -> SeedSpec:
    div = 20 if scale_name == "small" else 1
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
    out = subprocess.run(
        [sys.executable, "-m", "bench.quota", "--worker", mode, url],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


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


def main() -> int:
    if "--worker" in sys.argv:
        print(json.dumps(asyncio.run(_worker(sys.argv[-1], sys.argv[-2]))))
        return 0
    scale_name = scale()
    spec = spec_for(scale_name)
    template = pgtools.bench_db(f"quota_{scale_name}")
    print(f"seeding template {template}: {spec}", flush=True)
    counts = pgtools.make_template(template, spec)
    max_id = asyncio.run(pgtools.max_result_id(pgtools.db_url(template)))
    results: dict[str, Any] = {}
    try:
        for mode in ("plan-quota", "plan-budget"):
            url = pgtools.copy_database(template, pgtools.bench_db("quota_plan"))
            results[mode] = worker(url, mode)
            pgtools.drop_database(pgtools.bench_db("quota_plan"))
            print(f"  {mode}: {json.dumps(results[mode])}", flush=True)
        for name in ("baseline", "botfleet"):
            url = pgtools.copy_database(template, pgtools.bench_db(f"quota_{name}"))
            print(f"running {name} …", flush=True)
            results[name] = asyncio.run(measure(name, url, spec, max_id))
            pgtools.drop_database(pgtools.bench_db(f"quota_{name}"))
            print(f"  {name}: {json.dumps(results[name])}", flush=True)
    finally:
        pgtools.drop_database(template)
    same = (
        results["baseline"]["bots_over_quota_after"]
        == results["botfleet"]["bots_over_quota_after"]
        == 0
    )
    ratio = results["botfleet"]["rows_per_s"] / results["baseline"]["rows_per_s"]
    summary = {
        "sizes": {**counts, "spec": spec.__dict__ | {"now": None}, "keep": KEEP},
        "baseline": results["baseline"],
        "botfleet": results["botfleet"],
        "plan_quota": results["plan-quota"],
        "plan_budget": results["plan-budget"],
        "ratio_rows_per_s": round(ratio, 3),
        "writer_p99_ms": results["botfleet"]["writer"]["p99_ms"],
        "longest_txn_ms": results["botfleet"]["longest_txn_ms"],
        "peak_rss_mb": results["botfleet"]["peak_rss_mb"],
        "every_bot_within_quota": same,
    }
    write_result("quota", summary)
    print(
        f"ratio botfleet/baseline rows/s: {ratio:.3f}  writer p99: {summary['writer_p99_ms']} ms"
        f" (baseline {results['baseline']['writer']['p99_ms']} ms)  longest txn:"
        f" {summary['longest_txn_ms']} ms (baseline {results['baseline']['longest_txn_ms']} ms)"
        f"  plan: quota {results['plan-quota']['plan_seconds']} s, budget"
        f" {results['plan-budget']['plan_seconds']} s  peak RSS: {summary['peak_rss_mb']} MB"
        f"  every bot within its quota: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
