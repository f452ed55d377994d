"""Archive benchmark: the same full-scale purge with CLEANUP_ARCHIVE_DIR set and without it.

    python -m bench.archive                    # bench.purge's store: 1,000,000 bots (40 %
                                               # expired), 3,000,000 results + 50,000 orphans
    BENCH_SCALE=small python -m bench.archive  # 1/100 of that, one pair
    BENCH_ROUNDS=3 python -m bench.archive     # off/on pairs (default 2; 1 small), alternating

Each run gets a fresh copy of one template database and botfleet's real run (stages ``bots`` and
``orphaned_results``, default settings) in a process of its own, alternating off, on, off, on, so
that both see the same machine. The figure is the ratio of rows per second with the archive to
rows per second without it, per pair and at the median; with it, the archive's bytes per purged
row, and where the extra time goes: the worker's time inside the batch file writes (JSON lines
aggregated by PostgreSQL, gzip, write), inside their fsyncs, and the rest (each batch's own
transaction: BEGIN and COMMIT round trips, the wider RETURNING and json aggregation).
Both copies must leave the same rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import pgtools
from bench.purge import spec_for
from bench.report import cleanup_service, scale, write_result
from bench.report import rounds as bench_rounds


async def _worker(url: str, archive_dir: str) -> dict[str, Any]:
    import resource

    from botfleet.archive import writer

    spent = {"write_s": 0.0, "fsync_s": 0.0, "files": 0}
    real_fsync = os.fsync
    real_write = writer.RunArchive.write

    def timed_fsync(fd: int) -> None:
        started = time.perf_counter()
        real_fsync(fd)
        spent["fsync_s"] += time.perf_counter() - started

    def timed_write(self: writer.RunArchive, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_write(self, *args)
        finally:
            spent["write_s"] += time.perf_counter() - started
            spent["files"] += 1

    writer.os.fsync = timed_fsync  # type: ignore[attr-defined]
    writer.RunArchive.write = timed_write  # type: ignore[method-assign]
    overrides = {"cleanup_archive_dir": archive_dir} if archive_dir else {}
    async with cleanup_service(url, **overrides) as service:
        started = time.perf_counter()
        report = await service.run(
            trigger="cli", actor="cli:bench", dry_run=False, only=["bots", "orphaned_results"]
        )
        seconds = time.perf_counter() - started
    res = report["resources"]
    rows = sum(res[k]["deleted"] for k in ("bots", "bot_results", "orphaned_results"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    archived = report.get("archive") or {}
    return {
        "seconds": round(seconds, 3),
        "rows": rows,
        "rows_per_s": round(rows / seconds, 1),
        "status": report["status"],
        "client_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "bots_stage_s": res["bots"]["duration_seconds"],
        "orphans_stage_s": res["orphaned_results"]["duration_seconds"],
        "archive_files": len(archived.get("files", [])),
        "archive_bytes": archived.get("bytes", 0),
        "archive_rows": archived.get("rows", {}),
        "write_s": round(spent["write_s"], 3),
        "fsync_s": round(spent["fsync_s"], 3),
        "errors": report["errors"],
    }


def run_worker(url: str, archive_dir: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.archive", "--worker", url, archive_dir],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    if "--worker" in sys.argv:
        url, archive_dir = sys.argv[-2], sys.argv[-1]
        print(json.dumps(asyncio.run(_worker(url, archive_dir))))
        return 0
    scale_name = scale()
    rounds = bench_rounds(2)
    spec = spec_for(scale_name)
    template = pgtools.bench_db(f"archive_{scale_name}")
    print(f"seeding template {template}: {spec}", flush=True)
    counts = pgtools.make_template(template, spec)
    seeded_max = asyncio.run(pgtools.max_result_id(pgtools.db_url(template)))
    runs: list[dict[str, Any]] = []
    prints: set[str] = set()
    load: list[float] = []
    try:
        for round_ in range(rounds):
            for mode in ("off", "on"):
                name = pgtools.bench_db(f"archive_{mode}")
                url = pgtools.copy_database(template, name)
                archive_dir = tempfile.mkdtemp(prefix="botfleet-archive-") if mode == "on" else ""
                load.append(os.getloadavg()[0])
                try:
                    result = run_worker(url, archive_dir)
                    result["fingerprint"] = asyncio.run(pgtools.fingerprint(url, seeded_max))
                finally:
                    pgtools.drop_database(name)
                    if archive_dir:
                        shutil.rmtree(archive_dir, ignore_errors=True)
                prints.add(json.dumps(result.pop("fingerprint"), sort_keys=True))
                result.update(mode=mode, round=round_)
                runs.append(result)
                print(f"  {mode}: {json.dumps(result)}", flush=True)
    finally:
        pgtools.drop_database(template)
    off = [r for r in runs if r["mode"] == "off"]
    on = [r for r in runs if r["mode"] == "on"]
    ratios = [b["rows_per_s"] / a["rows_per_s"] for a, b in zip(off, on, strict=True)]
    extra = [b["seconds"] - a["seconds"] for a, b in zip(off, on, strict=True)]
    purged = on[-1]["rows"]
    summary = {
        "sizes": {**counts, "spec": spec.__dict__ | {"now": None}},
        "runs": runs,
        "ratios": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "extra_seconds_median": round(statistics.median(extra), 3),
        "write_s_median": round(statistics.median(r["write_s"] for r in on), 3),
        "fsync_s_median": round(statistics.median(r["fsync_s"] for r in on), 3),
        "bytes_per_row": round(on[-1]["archive_bytes"] / purged, 2) if purged else None,
        "load_avg_1m": [round(x, 2) for x in load],
        "same_rows_left": len(prints) == 1,
    }
    write_result("archive", summary)
    print(
        f"ratio archive on/off rows/s: {summary['ratio_median']} (pairs {summary['ratios']}), "
        f"extra {summary['extra_seconds_median']} s of which file writes "
        f"{summary['write_s_median']} s (fsync {summary['fsync_s_median']} s); "
        f"{summary['bytes_per_row']} bytes per purged row; same rows left: "
        f"{summary['same_rows_left']}"
    )
    return 0 if summary["same_rows_left"] else 1


if __name__ == "__main__":
    sys.exit(main())
