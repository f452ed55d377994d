"""Run every benchmark in ``bench/``: ``make bench`` (``BENCH_SCALE=small`` for a quick pass).

A benchmark is any ``bench/<name>.py`` with a ``main() -> int``, other than the helper modules
below; each runs in its own process (a clean event loop, memory and engine state). That process
is forked from this one, which has imported every benchmark and the botfleet modules they load
once (a fresh ``python -m`` paid the imports again for each). A failed benchmark does not stop
the others; the exit code is non-zero if any failed. ``python -m bench.all ingest purge`` runs
just those.

A full run goes one benchmark after the other, so that they do not compete for the 2 cores: its
figures are the ones BENCHMARKS.md quotes. A small run (``make bench-small``) is a pass that
takes every road once and whose figures nobody quotes, so it runs the benchmarks that only wait
on Docker engines (their daemons' start-up and shutdown, containers stopping) in a second lane
beside the PostgreSQL ones; each benchmark's output is then printed whole when it ends.
"""

from __future__ import annotations

import ast
import atexit
import importlib
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench import report

HERE = Path(__file__).resolve().parent
# Modules with a main() that are tools, not benchmarks.
HELPERS = frozenset(
    {"__init__", "all", "alternate", "report", "seed", "pgtools", "lean_ingest"}
)  # lean_ingest: the server bench.ingest starts, not a benchmark
# Benchmarks that wait on Docker engines of their own and touch no PostgreSQL: a small run's
# second lane.
ENGINE_LANE = frozenset({"containers", "swarm"})
# Imported once, before the forks: what the benchmarks load lazily (templates, cleanup runs).
PRELOAD = ("botfleet.cleanup.service", "botfleet.store.migrate", "botfleet.config")


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


def lanes(names: list[str], small: bool) -> list[list[str]]:
    """The benchmarks in lanes that run side by side: one lane unless ``small``."""
    if not small:
        return [names]
    engine = [n for n in names if n in ENGINE_LANE]
    rest = [n for n in names if n not in ENGINE_LANE]
    return [lane for lane in (rest, engine) if lane]


def _exit_code(value: object) -> int:
    return value if isinstance(value, int) else (0 if value is None else 1)


def fork_bench(name: str, output: IO[bytes] | None) -> int:
    """``bench.<name>``'s ``main()`` in a child forked from this process; its pid.

    This process has started no thread and no event loop, so a fork is as clean as a new
    interpreter. The child writes to ``output`` when given, runs the exit handlers its benchmark
    registered and leaves with ``os._exit``: it never returns into its parent's code.
    """
    module = importlib.import_module(f"bench.{name}")
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        if output is not None:
            os.dup2(output.fileno(), 1)
            os.dup2(output.fileno(), 2)
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


@dataclass
class Running:
    name: str
    lane: int
    started: float
    output: IO[bytes] | None


def run(names: list[str], small: bool) -> list[str]:
    """Every benchmark run, lane by lane side by side; the names of those that failed."""
    queues = lanes(names, small)
    captured = len(queues) > 1
    running: dict[int, Running] = {}
    failed = []

    def launch(lane: int) -> None:
        if not queues[lane]:
            return
        name = queues[lane].pop(0)
        output = tempfile.TemporaryFile() if captured else None  # noqa: SIM115 (closed when it ends)
        print(f"== bench.{name}" + (f" (lane {lane + 1})" if captured else ""), flush=True)
        running[fork_bench(name, output)] = Running(name, lane, time.monotonic(), output)

    for lane in range(len(queues)):
        launch(lane)
    while running:
        pid, status, usage = os.wait4(-1, 0)
        done = running.pop(pid, None)
        if done is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if done.output is not None:
            done.output.seek(0)
            sys.stdout.write(done.output.read().decode(errors="replace"))
            done.output.close()
        print(
            f"== bench.{done.name}: exit {code} in {time.monotonic() - done.started:.1f}s "
            f"(its processes' CPU {usage.ru_utime + usage.ru_stime:.1f}s, "
            f"load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        if code != 0:
            failed.append(done.name)
        launch(done.lane)
    return failed


def main(argv: list[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or discover()
    for module in (*PRELOAD, *(f"bench.{name}" for name in names)):
        importlib.import_module(module)
    report.machine()  # its versions come from four commands: once, not once a benchmark
    started = time.monotonic()
    failed = run(names, small=report.scale() == "small")
    print(f"== all: {time.monotonic() - started:.1f}s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
