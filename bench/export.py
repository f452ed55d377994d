"""Results export: rows/s of ``GET /results/export`` (NDJSON, CSV) vs PostgreSQL's own
``COPY (SELECT …) TO STDOUT`` of the same rows, in the same run, with the server's peak RSS.

    python -m bench.export                    # 1,000,000 results (100,000 bots x 10)
    BENCH_SCALE=small python -m bench.export  # 1/20 of that
    BENCH_ROUNDS=5 python -m bench.export     # rounds per format (default 3)

A real ``botfleet serve`` process (one uvicorn worker) on a seeded PostgreSQL database; the
client (httpx, streaming to a file) and the baseline (asyncpg's ``copy_from_query`` to a file)
run in this process on the same 2 cores. Rounds alternate the two, the order flipping every
other round (COPY first, then the API first), so that going second — or the machine's drift —
is no one side's habit; each round's ratio is COPY's time over the API's, and the figure is the
**median** of the rounds. The server's RSS is sampled every 20 ms for the whole measurement
(psutil), whatever else the server does meanwhile (its reconciler's and metrics' passes every
30 s included). Every round's file is parsed back and must hold exactly the stored rows: the
count, the sum of the ids and an md5 of the ids in order — or the run fails.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import pgtools
from bench.ingest import ADMIN_TOKEN, free_port, start_server, stop_server
from bench.report import rounds as bench_rounds
from bench.report import scale, write_result
from bench.seed import SeedSpec, seed
from botfleet.config import Settings
from botfleet.store.migrate import upgrade_sync

COLUMNS = "id, bot_id, created_at, data"
COPY_QUERY = f"SELECT {COLUMNS} FROM results ORDER BY id"
RSS_LIMIT_MB = 150
ROUNDS = bench_rounds(3)
GOAL_RATIO = 0.5
csv.field_size_limit(sys.maxsize)


def spec_for(scale_name: str) -> SeedSpec:
    div = 20 if scale_name == "small" else 1
    return SeedSpec(bots=100_000 // div, results_per_bot=10, expired_fraction=0.0, seed=11)


class RssSampler:
    """Peak resident set size of one process, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def ids_digest(ids: list[int]) -> dict[str, Any]:
    text = ",".join(map(str, ids))
    return {"count": len(ids), "sum": sum(ids), "md5": hashlib.md5(text.encode()).hexdigest()}


async def stored_digest(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(id), 0) AS s,"
            " md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) AS h FROM results"
        )
    finally:
        await conn.close()
    return {"count": int(row["n"]), "sum": int(row["s"]), "md5": row["h"]}


def parsed_digest(path: Path, fmt: str) -> dict[str, Any]:
    ids: list[int] = []
    with path.open(newline="" if fmt == "csv" else None, encoding="utf-8") as f:
        if fmt == "ndjson":
            for line in f:
                row = json.loads(line)
                ids.append(int(row["id"]))
        else:
            reader = csv.reader(f)
            if next(reader) != ["id", "bot_id", "created_at", "data"]:
                raise RuntimeError("the CSV header is not id,bot_id,created_at,data")
            for record in reader:
                json.loads(record[3])  # data is JSON
                ids.append(int(record[0]))
    return ids_digest(ids)


async def copy_baseline(url: str, fmt: str, path: Path) -> float:
    """PostgreSQL's own COPY of the same rows, to a file (text format beside NDJSON)."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.copy_from_query(COPY_QUERY, output=str(path), format=fmt)
        return time.perf_counter() - started
    finally:
        await conn.close()


def through_api(base: str, fmt: str, path: Path) -> float:
    """The export streamed to a file; seconds."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    timeout = httpx.Timeout(60, read=600)
    with httpx.Client(base_url=base, timeout=timeout) as client:
        started = time.perf_counter()
        with (
            client.stream("GET", "/results/export", params={"format": fmt}, headers=headers) as a,
            path.open("wb") as out,
        ):
            if a.status_code != 200:
                raise RuntimeError(f"HTTP {a.status_code}: {a.read()[:300]!r}")
            for chunk in a.iter_raw(1 << 16):
                out.write(chunk)
        return time.perf_counter() - started


def settle(pid: int, timeout: float = 60.0) -> float:
    """Wait until the server's RSS has stayed put for 3 s (after its start-up passes); the RSS
    then, in MB."""
    import psutil

    process = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    samples = [process.memory_info().rss]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        samples = [*samples[-5:], process.memory_info().rss]
        if len(samples) == 6 and max(samples) - min(samples) < 2**20:
            break
    return round(samples[-1] / 2**20, 1)


def one_round(
    url: str, base: str, fmt: str, number: int, workdir: Path, rss: RssSampler
) -> dict[str, Any]:
    """COPY and the API once each, in this round's order; the API's file parsed back."""
    copy_fmt = "text" if fmt == "ndjson" else "csv"
    copy_path, api_path = workdir / f"copy.{copy_fmt}", workdir / f"api.{fmt}"
    api_first = number % 2 == 1
    figures: dict[str, Any] = {"order": "api, copy" if api_first else "copy, api"}
    for side in ("api", "copy") if api_first else ("copy", "api"):
        if side == "copy":
            figures["copy_seconds"] = asyncio.run(copy_baseline(url, copy_fmt, copy_path))
        else:
            before = rss.peak = rss.rss()
            figures["api_seconds"] = through_api(base, fmt, api_path)
            figures["server_peak_rss_mb"] = round(rss.peak / 2**20, 1)
            figures["server_rss_growth_mb"] = round((rss.peak - before) / 2**20, 1)
    figures["ratio"] = figures["copy_seconds"] / figures["api_seconds"]
    figures["load_1min"] = round(os.getloadavg()[0], 2)
    figures["copy_bytes"], figures["api_bytes"] = copy_path.stat().st_size, api_path.stat().st_size
    figures["digest"] = parsed_digest(api_path, fmt)
    copy_path.unlink()
    api_path.unlink()
    return figures


def measure(url: str, base: str, pid: int, workdir: Path) -> dict[str, Any]:
    stored = asyncio.run(stored_digest(url))
    rows = stored["count"]
    figures: dict[str, Any] = {"rows": rows, "server_rss_mb_settled": settle(pid)}
    mismatches = []
    with RssSampler(pid) as whole, RssSampler(pid) as rss:
        for fmt in ("ndjson", "csv"):
            rounds = [one_round(url, base, fmt, n, workdir, rss) for n in range(ROUNDS)]
            for number, r in enumerate(rounds):
                if r.pop("digest") != stored:
                    mismatches.append({"format": fmt, "round": number})
            ratios = [r["ratio"] for r in rounds]
            figures[fmt] = {
                "rounds": rounds,
                "ratio_median": round(statistics.median(ratios), 3),
                "ratio_per_round": [round(x, 3) for x in ratios],
                "copy_rows_per_s_median": round(
                    rows / statistics.median(r["copy_seconds"] for r in rounds)
                ),
                "api_rows_per_s_median": round(
                    rows / statistics.median(r["api_seconds"] for r in rounds)
                ),
                "server_peak_rss_mb": max(r["server_peak_rss_mb"] for r in rounds),
                "server_rss_growth_mb": max(r["server_rss_growth_mb"] for r in rounds),
                "parsed_back": not any(m["format"] == fmt for m in mismatches),
            }
            f = figures[fmt]
            print(
                f"{fmt:6} COPY {f['copy_rows_per_s_median']:>9,} rows/s"
                f"  API {f['api_rows_per_s_median']:>9,} rows/s (medians)"
                f"  ratio median {f['ratio_median']} (rounds {f['ratio_per_round']})"
                f"  peak RSS {f['server_peak_rss_mb']} MB (+{f['server_rss_growth_mb']})"
                f"  parsed back: {f['parsed_back']}",
                flush=True,
            )
    figures["server_peak_rss_mb"] = round(whole.peak / 2**20, 1)
    figures["digest"] = stored
    figures["mismatches"] = mismatches
    return figures


def main() -> int:
    name = pgtools.bench_database_name("export")
    pgtools.admin(f'CREATE DATABASE "{name}"')
    url = pgtools.db_url(name)
    proc = None
    try:
        upgrade_sync(Settings(database_url=url, admin_token=ADMIN_TOKEN))  # type: ignore[call-arg]
        seeded = seed(url, spec_for(scale()))
        print(f"seeded {seeded}")
        port = free_port()
        proc = start_server(url, port)
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
            figures = measure(url, f"http://127.0.0.1:{port}", proc.pid, Path(tmp))
        figures["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    finally:
        stop_server(proc)
        pgtools.drop_database(name)
    figures["server"] = "botfleet serve (1 uvicorn worker); client and COPY in one process beside"
    path = write_result("export", figures)
    ok = not figures["mismatches"] and figures["server_peak_rss_mb"] < RSS_LIMIT_MB
    # The speed goal is for the full size: a small pass (50,000 rows) is all fixed costs, so
    # there only the rows and the memory must hold (like the other benches' small passes).
    if scale() != "small":
        for fmt in ("ndjson", "csv"):
            ok = ok and figures[fmt]["ratio_median"] >= GOAL_RATIO
    print(f"server peak RSS over the whole measurement: {figures['server_peak_rss_mb']} MB")
    print(f"-> {path}  {'goals met' if ok else 'GOALS MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
