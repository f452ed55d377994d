"""Run every benchmark in ``bench/``: ``make bench`` (``BENCH_SCALE=small`` for a quick pass).

A benchmark is any ``bench/<name>.py`` with a ``main() -> int``, other than the helper modules
below; each runs in its own process (a clean event loop, memory and engine state), one after the
other so they do not compete for the 2 cores. A failed benchmark does not stop the others; the
exit code is non-zero if any failed. ``python -m bench.all ingest purge`` runs just those.

A small run is a quick pass whose figures nobody compares: there the benchmarks of the Docker
engine (``ENGINE_BENCHES``, on SQLite) run in a second lane beside the PostgreSQL ones, each
bench's output printed whole when it ends.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.report import scale

HERE = Path(__file__).resolve().parent
# Modules with a main() that are tools, not benchmarks.
HELPERS = frozenset(
    {"__init__", "all", "alternate", "report", "seed", "pgtools", "lean_ingest"}
)  # lean_ingest: the server bench.ingest starts, not a benchmark
# Benchmarks that drive the Docker engine and keep their store in SQLite: nothing they do
# touches the PostgreSQL server the others measure.
ENGINE_BENCHES = frozenset({"containers", "swarm"})


def discover() -> list[str]:
    """Names of the modules in bench/ that define a top-level ``main``."""
    found = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem in HELPERS or path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            found.append(path.stem)
    return found


def run_one(name: str, capture: bool) -> tuple[int, str]:
    """One benchmark in a process of its own; its exit code and the summary line (with its
    output before it when ``capture``)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}"],
        cwd=HERE.parent,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
    )
    output = proc.stdout.read() if proc.stdout is not None else ""
    # wait4: this bench's own CPU (its process and the ones it waited for), even with another
    # lane running beside it.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    summary = (
        f"== bench.{name}: exit {code} in {time.monotonic() - started:.1f}s "
        f"(its processes' CPU {usage.ru_utime + usage.ru_stime:.1f}s, "
        f"load {os.getloadavg()[0]:.1f})"
    )
    return code, output + summary


def run_lane(names: list[str], capture: bool, failed: list[str], lock: threading.Lock) -> None:
    for name in names:
        if not capture:
            with lock:
                print(f"== bench.{name}", flush=True)
        code, text = run_one(name, capture)
        with lock:
            print(f"== bench.{name}\n{text}" if capture else text, flush=True)
            if code != 0:
                failed.append(name)


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or discover()
    failed: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()
    beside = [n for n in names if n in ENGINE_BENCHES] if scale() == "small" else []
    lane = threading.Thread(target=run_lane, args=(beside, True, failed, lock))
    lane.start()
    run_lane([n for n in names if n not in beside], False, failed, lock)
    lane.join()
    print(f"== all: {time.monotonic() - started:.1f}s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
