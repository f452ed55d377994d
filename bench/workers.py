"""Run a measured worker in a fresh process that does not pay for importing botfleet again.

Benches run botfleet's cleanup in a process of its own, so that its peak RSS and its CPU are its
own and a run's monkeypatching (bench.archive's ablations) dies with it. Started with
``python -m``, every such process imported botfleet afresh (about a second of CPU each, a
dozen of them in ``make bench-small``). Here each call gets a new process forked from a
forkserver that imported botfleet once: still one process per run, with its own memory and
CPU counters, started in milliseconds. The worker's ``ru_maxrss`` counts the imported modules'
pages as before (a forked child maps them), its CPU no longer counts the import.
"""

from __future__ import annotations

import atexit
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from typing import Any, TypeVar

T = TypeVar("T")

# What a worker imports before it runs: the cleanup service and the drivers under it.
PRELOAD = ["botfleet.cleanup.service", "asyncpg", "bench.report"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)
# At exit the server is stopped and waited for, so that its CPU and its workers' count among
# this process's children (bench.all reports each benchmark's processes' CPU).
atexit.register(forkserver._forkserver._stop)  # type: ignore[attr-defined]


def call(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a new process forked from the preloaded server; its exceptions
    are raised here. ``function`` is a module-level function (it is pickled by name); its
    module joins the preload when this call starts the server."""
    if function.__module__ != "__main__":
        _context.set_forkserver_preload([*PRELOAD, function.__module__])
    with ProcessPoolExecutor(max_workers=1, mp_context=_context) as pool:
        return pool.submit(function, *args).result()
