"""Plan benchmark: a full dry run (counts and samples of every database stage) on the purge store.

    python -m bench.plan      # BENCH_SCALE=small for 1/100 size

The baseline is the cheapest honest way to learn the same counts: three ``count(*)`` queries with
the same conditions, run on the same database in the same process.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench import pgtools
from bench.purge import spec_for
from bench.report import cleanup_service, scale, write_result


async def counts_baseline(url: str) -> float:
    cutoff = datetime.now(UTC) - timedelta(days=7)
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.fetchval(
            "SELECT count(*) FROM bots WHERE deleted_at IS NOT NULL AND deleted_at < $1", cutoff
        )
        await conn.fetchval(
            "SELECT count(*) FROM results WHERE bot_id IN "
            "(SELECT id FROM bots WHERE deleted_at IS NOT NULL AND deleted_at < $1)",
            cutoff,
        )
        await conn.fetchval(
            "SELECT count(*) FROM results r"
            " WHERE NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id)"
        )
        return time.perf_counter() - started
    finally:
        await conn.close()


async def dry_run(url: str) -> tuple[float, dict[str, Any]]:
    async with cleanup_service(url) as service:
        started = time.perf_counter()
        report = await service.run(trigger="cli", actor="cli:bench", dry_run=True)
        return time.perf_counter() - started, report


def main() -> int:
    spec = spec_for(scale())
    template = pgtools.bench_db(f"plan_{scale()}")
    counts = pgtools.make_template(template, spec)
    try:
        url = pgtools.db_url(template)
        plan_times, base_times = [], []
        report: dict[str, Any] = {}
        for _ in range(3):
            seconds, report = asyncio.run(dry_run(url))
            plan_times.append(seconds)
            base_times.append(asyncio.run(counts_baseline(url)))
        res = report["resources"]
        figures = {
            "sizes": counts,
            "plan_seconds": round(statistics.median(plan_times), 3),
            "plan_seconds_all": [round(t, 3) for t in plan_times],
            "count_queries_seconds": round(statistics.median(base_times), 3),
            "ratio_plan_vs_counts": round(
                statistics.median(plan_times) / statistics.median(base_times), 3
            ),
            "found": {k: res[k]["found"] for k in ("bots", "bot_results", "orphaned_results")},
        }
    finally:
        pgtools.drop_database(template)
    write_result("plan", figures)
    print(
        f"dry run (plan): {figures['plan_seconds']} s (median of 3); three count(*) queries: "
        f"{figures['count_queries_seconds']} s; found {figures['found']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
