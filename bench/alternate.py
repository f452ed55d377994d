"""Two checkouts of botfleet, the same benchmarks, rounds alternating: did a change cost speed?

    python -m bench.alternate OLD_TREE NEW_TREE [--rounds 3] [--names purge,containers,plan]

Each round runs every named benchmark on the old tree, then on the new one (each in its own
process, with ``PYTHONPATH`` pointing at that tree, so its own ``bench/`` and ``botfleet/`` are
used), and reads the figures it wrote to ``<tree>/bench/results/<name>.json``. Alternating
spreads the machine's own drift (other work, the disk's caches) over both; the order flips every
other round (old, new; new, old; …) so that going second is no one side's habit. Prints a table of
every round, the medians and the load average, and writes ``bench/results/alternate.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import result_path, write_result

# The figures compared, per benchmark (each a key of its result file).
FIGURES = {
    "purge": (
        "ratio_rows_per_s",
        "writer_p99_ms",
        "longest_txn_ms",
        "peak_rss_mb",
        "tuned.ratio_rows_per_s",  # since issue 17
    ),
    # The ratio to prune in the same run, and botfleet's own rate (alternating rounds share the
    # machine's state, so the two trees' rates compare directly too).
    "containers": ("ratio_containers_per_s", "ratio_vs_floor", "botfleet.containers_per_s"),
    "plan": ("plan_seconds", "ratio_plan_vs_counts"),
    # Medians of the run's own requests (the first page's SQL alone beside them).
    "fleet": (
        "first_page.median_ms",
        "last_page.median_ms",
        "label_filter.median_ms",
        "name_search.median_ms",
        "status_deleted.median_ms",
        "sql_first_page_median_ms",
    ),
    # Each a median of the run's own alternating rounds against COPY; the whole run's peak.
    "export": (
        "ndjson.ratio_median",
        "csv.ratio_median",
        "ndjson.api_rows_per_s_median",
        "csv.api_rows_per_s_median",
        "server_peak_rss_mb",
    ),
}


def _figure(result: dict[str, Any], key: str) -> Any:
    """``result[key]``, where a dotted key reads into nested objects."""
    value: Any = result
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def run_one(tree: Path, name: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    path = result_path(name, tree / "bench/results")
    before = path.stat().st_mtime if path.exists() else None
    # A benchmark exits 1 when it misses its goals: that is a figure of the round, not a
    # failure of it; only a run that wrote no result is one.
    done = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=tree, env=env, check=False)
    if not path.exists() or path.stat().st_mtime == before:
        raise RuntimeError(f"bench.{name} in {tree} wrote no result (exit {done.returncode})")
    result = json.loads(path.read_text())
    figures = {key: _figure(result, key) for key in FIGURES.get(name, ())}
    figures["goals_met"] = done.returncode == 0
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    figures["load_1min"] = round(os.getloadavg()[0], 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--names", default="purge,containers,plan")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    for number in range(1, args.rounds + 1):
        this: dict[str, dict[str, dict[str, Any]]] = {}
        # Every second round runs the new tree first, so whatever a run leaves behind for the
        # next one (the engine's state, the disk's caches) does not always favour one side.
        sides = (("old", args.old), ("new", args.new))
        if number % 2 == 0:
            sides = sides[::-1]
        for name in names:
            for side, tree in sides:
                figures = run_one(tree.resolve(), name)
                this.setdefault(name, {})[side] = figures
                print(f"round {number} {name} {side}: {figures}", flush=True)
        rounds.append(this)
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        for side in ("old", "new"):
            for key in FIGURES.get(name, ()):
                values = [r[name][side][key] for r in rounds if r[name][side].get(key) is not None]
                if values:
                    medians.setdefault(name, {}).setdefault(side, {})[key] = statistics.median(
                        values
                    )
    print("\nmedians:")
    for name, sides in medians.items():
        for key in FIGURES[name]:
            old, new = sides.get("old", {}).get(key), sides.get("new", {}).get(key)
            print(f"  {name:<11} {key:<24} old {old}  new {new}")
    write_result(
        "alternate",
        {"old": str(args.old), "new": str(args.new), "rounds": rounds, "medians": medians},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
