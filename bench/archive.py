"""Archive benchmark: the same full-scale purge with CLEANUP_ARCHIVE_DIR set and without it.

    python -m bench.archive                    # bench.purge's store: 1,000,000 bots (40 %
                                               # expired), 3,000,000 results + 50,000 orphans
    BENCH_SCALE=small python -m bench.archive  # 1/100 of that, one pair
    BENCH_ROUNDS=3 python -m bench.archive     # off/on pairs (default 2; 1 small), alternating
    BENCH_DB_PREFIX=mine_ python -m bench.archive  # its databases' names (default botfleet_bench_)
    BENCH_DB_CONCURRENCY=1 python -m bench.archive   # both runs with CLEANUP_DB_CONCURRENCY=1
    BENCH_ARCHIVE_PROFILE=1 python -m bench.archive  # also the two ablations below, each round
    BENCH_ARCHIVE_VARIANTS=one_row python -m bench.archive  # also the archived run of one row
                                               # of lines per batch (the code before); also
                                               # batch_factor_N, and arrays (lines without keys)

Each run gets a fresh copy of one template database and botfleet's real run (stages ``bots`` and
``orphaned_results``, default settings) in a process of its own, alternating off, on, off, on, so
that both see the same machine. The figure is the ratio of rows per second with the archive to
rows per second without it, per pair and at the median; with it, the archive's bytes per purged
row, and where the extra time goes: the worker's time inside the batch file writes (JSON lines
aggregated by PostgreSQL, gzip, write), inside their fsyncs, and the rest (each batch's own
transaction: BEGIN and COMMIT round trips, the wider RETURNING and json aggregation); and how
long each batch's transaction lasts, statement to commit (``batch_s``: median, 95th percentile,
longest). Both copies must leave the same rows.

With ``BENCH_ARCHIVE_PROFILE=1`` each round also runs two ablations of the archived run, so that
the extra time can be split by what causes it: ``no_lines`` (each batch in its transaction, its
file written and fsynced, but the statement returns no lines: the file holds only its header)
and ``lines_kept`` (PostgreSQL renders every line, as for the archive, but hands over none).
Then no_lines - off is the batch structure (transactions, files, fsyncs), lines_kept - no_lines
the rendering in the database, on - lines_kept the handover, compression and writing of the
lines. The ablations patch this worker process only; their archives are not readable.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from bench import pgtools, workers
from bench.purge import spec_for
from bench.report import cleanup_service, scale, write_result

# Where a batch's time goes, summed over every batch of every walk (walks overlap, so the sums
# exceed the run's time; their shares say which part a walk waits on).
PHASES = ("statement", "compress_write", "fsync_file", "rename_fsync_dir", "begin_commit")


def _instrument(spent: dict[str, float], batch_seconds: list[float]) -> None:
    """Time the phases of each batch by wrapping the functions that do them (this process only)."""
    from botfleet.archive import writer
    from botfleet.cleanup import timing
    from botfleet.cleanup.archived_batches import ArchivedBatches
    from botfleet.cleanup.batches import BatchLoop
    from botfleet.cleanup.purge_bots import BotPurge
    from botfleet.cleanup.purge_results import ResultPurge

    def timed(key: str, fn: Any) -> Any:
        def sync(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - started

        async def asynchronous(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - started

        return asynchronous if asyncio.iscoroutinefunction(fn) else sync

    real_fsync = os.fsync
    real_fsync_dir = writer.fsync_dir

    def fsync(fd: int) -> None:
        started = time.perf_counter()
        real_fsync(fd)
        spent["fsyncs"] += 1
        spent["fsync_s"] += time.perf_counter() - started

    for governor in (timing.BatchGovernor, timing.FixedBatch):
        observe = governor.observe

        def observed(self: Any, seconds: float, rows: int, _real: Any = observe) -> None:
            # Statement to commit: how long each batch's transaction held its rows.
            batch_seconds.append(seconds)
            return _real(self, seconds, rows)  # type: ignore[no-any-return]

        governor.observe = observed  # type: ignore[method-assign]
    writer.os.fsync = fsync  # type: ignore[attr-defined]
    writer.fsync_dir = timed("dir_s", real_fsync_dir)  # type: ignore[attr-defined]
    writer.os.replace = timed("rename_s", os.replace)  # type: ignore[attr-defined]
    writer.RunArchive.write = timed("write_s", writer.RunArchive.write)  # type: ignore[method-assign]
    BotPurge._delete_bots = timed("statement", BotPurge._delete_bots)  # type: ignore[method-assign]
    ResultPurge._results_pg = timed("statement", ResultPurge._results_pg)  # type: ignore[method-assign]
    ArchivedBatches.on = timed("batch_s", ArchivedBatches.on)  # type: ignore[method-assign]
    BatchLoop._batch = timed("batch_s", BatchLoop._batch)  # type: ignore[method-assign]


def _spread(seconds: list[float]) -> dict[str, float]:
    """Median, 95th percentile and longest of the batches' transactions (seconds)."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


def _phases(spent: dict[str, float]) -> dict[str, float]:
    """The batch time split into :data:`PHASES` (seconds, summed over batches)."""
    fsync_file = spent["fsync_s"] - spent["dir_s"]  # fsync_dir's own fsync is counted in both
    phases = {
        "statement": spent["statement"],
        "compress_write": spent["write_s"] - spent["fsync_s"] - spent["rename_s"],
        "fsync_file": fsync_file,
        "rename_fsync_dir": spent["rename_s"] + spent["dir_s"],
    }
    phases["begin_commit"] = spent["batch_s"] - sum(phases.values())
    return {k: round(v, 3) for k, v in phases.items()}


PROFILED = ("no_lines", "lines_kept")
# Variants of the archived run (BENCH_ARCHIVE_VARIANTS=one_row,…), alternated with off and on in
# the same rounds: one_row hands each batch's lines over as one row (issue 21's third session);
# batch_factor_N runs archived batches of N x CLEANUP_BATCH_SIZE (writer.BATCH_FACTOR); arrays
# renders each line as an array of values, naming no column (issue 21, sixth session).
VARIANTS = (
    "one_row",
    "batch_factor_1",
    "batch_factor_2",
    "batch_factor_3",
    "batch_factor_4",
    "arrays",
)


def _ablate(mode: str) -> None:
    """The ablations of BENCH_ARCHIVE_PROFILE and the variants (see the module's docstring)."""
    from botfleet.archive import writer
    from botfleet.cleanup import archived_results, purge_bots

    if mode.startswith("batch_factor_"):
        writer.BATCH_FACTOR = int(mode.removeprefix("batch_factor_"))  # type: ignore[misc]
        return
    if mode == "arrays":
        _arrays()
        return

    def each(parts: Any) -> str:
        return " UNION ALL ".join(f"SELECT {e} AS line FROM {s}" for e, s in parts)

    def no_lines(summary: str, parts: Any) -> str:
        return f"SELECT s.*, NULL::bytea AS lines FROM ({summary}) s"

    def lines_kept(summary: str, parts: Any) -> str:
        rendered = f"(SELECT sum(length(line)) AS n FROM ({each(parts)}) u) k"
        return (
            f"SELECT s.*, NULL::bytea AS lines FROM ({summary}) s, {rendered} "
            "WHERE k.n >= 0 OR k.n IS NULL"
        )

    def one_row(summary: str, parts: Any) -> str:
        lines = f"(SELECT convert_to(string_agg(line, E'\\n'), 'UTF8') FROM ({each(parts)}) u)"
        return f"SELECT s.*, {lines} AS lines FROM ({summary}) s"

    ablated = {"no_lines": no_lines, "lines_kept": lines_kept, "one_row": one_row}[mode]
    purge_bots.with_lines = ablated  # type: ignore[assignment]
    archived_results.with_lines = ablated  # type: ignore[assignment]


def _arrays() -> None:
    """The ``arrays`` variant: each line a JSON array of the row's values and the extras, no
    key repeated (what a format naming each column once per file would render and hand over;
    its files are not readable by ``botfleet archive``)."""
    from botfleet.cleanup import archive_lines, archived_results, purge_bots

    def row_array(alias: str, columns: Any) -> str:
        refs = [(f'{alias}."{c.key}"', c) for c in columns]
        parts = [f"coalesce({archive_lines._value(ref, c)}, 'null')" for ref, c in refs]
        return "'[' || " + " || ',' || ".join(parts) + " || ']'"

    def line(table: str, alias: str, columns: Any, **extra: str) -> str:
        row = row_array(alias, columns)
        if not extra:
            return row
        more = " || ',' || ".join(extra.values())
        return f"'[' || {row} || ',' || {more} || ']'"

    purge_bots.line = line  # type: ignore[assignment]
    archived_results.line = line  # type: ignore[assignment]


async def _worker(url: str, archive_dir: str, mode: str) -> dict[str, Any]:
    import resource

    if mode in PROFILED or mode in VARIANTS:
        _ablate(mode)
    spent: dict[str, float] = dict.fromkeys(
        ("write_s", "fsync_s", "fsyncs", "dir_s", "rename_s", "statement", "batch_s"), 0.0
    )
    batch_seconds: list[float] = []
    _instrument(spent, batch_seconds)
    overrides: dict[str, Any] = {"cleanup_archive_dir": archive_dir} if archive_dir else {}
    if os.environ.get("BENCH_DB_CONCURRENCY"):  # both runs: how many walks side by side
        overrides["cleanup_db_concurrency"] = int(os.environ["BENCH_DB_CONCURRENCY"])
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
        "fsyncs": int(spent["fsyncs"]),
        "batch_phases_s": _phases(spent),
        "batches": len(batch_seconds),
        "batch_s": _spread(batch_seconds),
        "errors": report["errors"],
    }


def _profile(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The archive's extra time split by the ablations: median seconds per mode, and each
    cause's share of on - off."""
    seconds = {
        mode: statistics.median(r["seconds"] for r in runs if r["mode"] == mode)
        for mode in ("off", "on", *PROFILED)
    }
    causes = {
        "batch_structure": seconds["no_lines"] - seconds["off"],
        "rendering_in_db": seconds["lines_kept"] - seconds["no_lines"],
        "handover_compress_write": seconds["on"] - seconds["lines_kept"],
    }
    extra = seconds["on"] - seconds["off"] or 1.0
    return {
        "median_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "extra_seconds": {k: round(v, 3) for k, v in causes.items()},
        "shares_of_extra": {k: round(v / extra, 3) for k, v in causes.items()},
    }


def _median_phases(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {p: round(statistics.median(r["batch_phases_s"][p] for r in runs), 3) for p in PHASES}


def _shares(phases: dict[str, float]) -> dict[str, float]:
    """Each phase's share of a batch's time, summed over batches (statement to commit)."""
    total = sum(phases.values()) or 1.0
    return {p: round(v / total, 3) for p, v in phases.items()}


def run_worker(url: str, archive_dir: str, mode: str) -> dict[str, Any]:
    """One run in a fresh process: the ablations patch modules, and die with it."""
    return workers.call(worker, url, archive_dir, mode)


def worker(url: str, archive_dir: str, mode: str) -> dict[str, Any]:
    return asyncio.run(_worker(url, archive_dir, mode))


def main() -> int:
    scale_name = scale()
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    modes = ("off", "on", *PROFILED) if os.environ.get("BENCH_ARCHIVE_PROFILE") else ("off", "on")
    variants = [v for v in os.environ.get("BENCH_ARCHIVE_VARIANTS", "").split(",") if v]
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"BENCH_ARCHIVE_VARIANTS: one of {', '.join(VARIANTS)}")
    modes = (*modes, *variants)
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
            # off, on, … then the reverse order: no mode always runs right after another one.
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                name = pgtools.bench_db(f"archive_{mode}")
                url = pgtools.copy_database(template, name)
                archive_dir = tempfile.mkdtemp(prefix="botfleet-archive-") if mode != "off" else ""
                load.append(os.getloadavg()[0])
                try:
                    result = run_worker(url, archive_dir, mode)
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
    # Rounds alternate the order: pair each round's off with the same round's on.
    ratios = [b["rows_per_s"] / a["rows_per_s"] for a, b in zip(off, on, strict=True)]
    extra = [b["seconds"] - a["seconds"] for a, b in zip(off, on, strict=True)]
    purged = on[-1]["rows"]
    summary = {
        "sizes": {**counts, "spec": spec.__dict__ | {"now": None}},
        "runs": runs,
        "ratios": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "extra_seconds_median": round(statistics.median(extra), 3),
        "batch_phases_on_median_s": _median_phases(on),
        "batch_phases_off_median_s": _median_phases(off),
        "batch_phase_shares_on": _shares(_median_phases(on)),
        "batches_off_on": [off[-1]["batches"], on[-1]["batches"]],
        "batch_s_off_on_median": [
            round(statistics.median(r["batch_s"]["median"] for r in runs_of), 3)
            for runs_of in (off, on)
        ],
        "batch_s_on_max": max(r["batch_s"]["max"] for r in on),
        "write_s_median": round(statistics.median(r["write_s"] for r in on), 3),
        "fsync_s_median": round(statistics.median(r["fsync_s"] for r in on), 3),
        "bytes_per_row": round(on[-1]["archive_bytes"] / purged, 2) if purged else None,
        "load_avg_1m": [round(x, 2) for x in load],
        "same_rows_left": len(prints) == 1,
    }
    if os.environ.get("BENCH_ARCHIVE_PROFILE"):
        summary["profile"] = _profile(runs)
    for variant in variants:
        of = [r for r in runs if r["mode"] == variant]
        summary[f"{variant}_seconds"] = [r["seconds"] for r in of]
        summary[f"{variant}_batch_s"] = [r["batch_s"] for r in of]
    write_result("archive", summary)
    print(
        f"ratio archive on/off rows/s: {summary['ratio_median']} (pairs {summary['ratios']}), "
        f"extra {summary['extra_seconds_median']} s of which file writes "
        f"{summary['write_s_median']} s (fsync {summary['fsync_s_median']} s); "
        f"{summary['bytes_per_row']} bytes per purged row; batch time on: "
        f"{summary['batch_phase_shares_on']}; same rows left: "
        f"{summary['same_rows_left']}"
    )
    return 0 if summary["same_rows_left"] else 1


if __name__ == "__main__":
    sys.exit(main())
