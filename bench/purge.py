"""Purge benchmark: botfleet's batched database stages vs one bulk DELETE, on the same data.

    python -m bench.purge            # 1,000,000 bots (40 % expired, 10 % recently deleted),
                                     # 3,000,000 results + 50,000 orphaned results
    BENCH_SCALE=small python -m bench.purge   # 1/20 of that

Each contender gets a fresh copy of one template database. While it runs, a separate writer process
updates a random live bot and inserts a result every 10 ms; its latency is reported. Afterwards both
copies must hold exactly the same seeded rows.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench import pgtools
from bench.report import cleanup_service, scale, write_result
from bench.seed import SeedSpec

CONTENDER_APP = "botfleet"  # application_name of botfleet's sessions (store/session.py)


def spec_for(scale_name: str) -> SeedSpec:
    div = 20 if scale_name == "small" else 1
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
    out = subprocess.run(
        [sys.executable, "-m", "bench.purge", "--botfleet-worker", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


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
        started = time.perf_counter()
        report = await service.run(
            trigger="cli",
            actor="cli:bench",
            dry_run=False,
            only=["bots", "orphaned_results"],
            pause_hook=planned,
            progress=progress,
        )
        seconds = time.perf_counter() - started
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
        "client_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
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


async def measure(name: str, url: str, spec: SeedSpec, seeded_max_id: int) -> dict[str, Any]:
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
    result["longest_txn_ms"] = round(watcher.longest_ms, 1)
    result["longest_txn_query"] = watcher.longest_query
    result["writer"] = latency
    result["rows_per_s"] = round(result["rows"] / result["seconds"], 1)
    result["fingerprint"] = await pgtools.fingerprint(url, seeded_max_id)
    return result


def main() -> int:
    if "--botfleet-worker" in sys.argv:
        print(json.dumps(asyncio.run(_botfleet_worker(sys.argv[-1]))))
        return 0
    scale_name = scale()
    spec = spec_for(scale_name)
    template = pgtools.bench_db(f"purge_{scale_name}")
    print(f"seeding template {template}: {spec}", flush=True)
    counts = pgtools.make_template(template, spec)
    seeded_max = asyncio.run(pgtools.max_result_id(pgtools.db_url(template)))
    results: dict[str, Any] = {}
    try:
        for name in ("baseline", "botfleet"):
            url = pgtools.copy_database(template, pgtools.bench_db(f"purge_{name}"))
            print(f"running {name} …", flush=True)
            results[name] = asyncio.run(measure(name, url, spec, seeded_max))
            pgtools.drop_database(pgtools.bench_db(f"purge_{name}"))
            shown = {k: v for k, v in results[name].items() if k != "fingerprint"}
            print(f"  {name}: {json.dumps(shown)}", flush=True)
    finally:
        pgtools.drop_database(template)
    same = results["baseline"]["fingerprint"] == results["botfleet"]["fingerprint"]
    ratio = results["botfleet"]["rows_per_s"] / results["baseline"]["rows_per_s"]
    summary = {
        "sizes": {**counts, "spec": spec.__dict__ | {"now": None}},
        "baseline": results["baseline"],
        "botfleet": results["botfleet"],
        "ratio_rows_per_s": round(ratio, 3),
        "writer_p99_ms": results["botfleet"]["writer"]["p99_ms"],
        "longest_txn_ms": results["botfleet"]["longest_txn_ms"],
        "peak_rss_mb": results["botfleet"]["peak_rss_mb"],
        "same_rows_left": same,
    }
    write_result("purge", summary)
    print(
        f"ratio botfleet/baseline rows/s: {ratio:.3f}  writer p99: "
        f"{summary['writer_p99_ms']} ms (baseline {results['baseline']['writer']['p99_ms']} ms)  "
        f"longest txn: {summary['longest_txn_ms']} ms (baseline "
        f"{results['baseline']['longest_txn_ms']} ms)  peak RSS: {summary['peak_rss_mb']} MB  "
        f"same rows left: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
