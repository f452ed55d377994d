"""Run every benchmark in ``bench/``: ``make bench`` (``BENCH_SCALE=small`` for a quick pass).

A benchmark is any ``bench/<name>.py`` with a ``main() -> int``, other than the helper modules
below; each runs in its own process (a clean event loop, memory and engine state), one after the
other so they do not compete for the 2 cores. That process is forked from this one, which has
imported every benchmark and the botfleet modules they load once (a fresh ``python -m`` paid the
imports again for each). A failed benchmark does not stop the others; the exit code is non-zero
if any failed. ``python -m bench.all ingest purge`` runs just those.
"""

from __future__ import annotations

import ast
import atexit
import importlib
import os
import resource
import sys
import time
import traceback
from pathlib import Path

from bench import report

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


# Imported once, before the forks: what the benchmarks load lazily (templates, cleanup runs).
PRELOAD = ("botfleet.cleanup.service", "botfleet.store.migrate", "botfleet.config")


def _exit_code(value: object) -> int:
    return value if isinstance(value, int) else (0 if value is None else 1)


def run_forked(name: str) -> int:
    """``bench.<name>``'s ``main()`` in a child forked from this process; its exit code.

    This process has started no thread and no event loop, so a fork is as clean as a new
    interpreter. The child runs the exit handlers its benchmark registered and leaves with
    ``os._exit``: it never returns into its parent's code.
    """
    module = importlib.import_module(f"bench.{name}")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sys.argv = [f"bench/{name}.py"]
            code = _exit_code(module.main())
        except SystemExit as stop:
            code = _exit_code(stop.code)
        except BaseException:
            traceback.print_exc()
        finally:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or discover()
    for module in (*PRELOAD, *(f"bench.{name}" for name in names)):
        importlib.import_module(module)
    report.machine()  # its versions come from four commands: once, not once a benchmark
    failed = []
    started_all = time.monotonic()
    for name in names:
        print(f"== bench.{name}", flush=True)
        started, cpu = time.monotonic(), _children_cpu()
        code = run_forked(name)
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
