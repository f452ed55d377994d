"""Run every benchmark in ``bench/``: ``make bench`` (``BENCH_SCALE=small`` for a quick pass).

A benchmark is any ``bench/<name>.py`` with a ``main() -> int``, other than the helper modules
below; each runs in its own process (a clean event loop, memory and engine state), one after the
other so they do not compete for the 2 cores. A failed benchmark does not stop the others; the
exit code is non-zero if any failed. ``python -m bench.all ingest purge`` runs just those.
"""

from __future__ import annotations

import ast
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Modules with a main() that are tools, not benchmarks.
HELPERS = frozenset(
    {"__init__", "all", "alternate", "report", "seed", "pgtools", "lean_ingest"}
)  # lean_ingest: the server bench.ingest starts, not a benchmark


def _children_cpu() -> float:
    """CPU seconds of the benchmarks' processes so far (those waited for: each bench's tree)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or discover()
    failed = []
    started_all = time.monotonic()
    for name in names:
        print(f"== bench.{name}", flush=True)
        started, cpu = time.monotonic(), _children_cpu()
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent).returncode
        print(
            f"== bench.{name}: exit {code} in {time.monotonic() - started:.1f}s "
            f"(its processes' CPU {_children_cpu() - cpu:.1f}s, load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        if code != 0:
            failed.append(name)
    print(f"== all: {time.monotonic() - started_all:.1f}s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
