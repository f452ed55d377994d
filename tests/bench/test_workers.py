"""bench.workers and bench.all's forks: a fresh process each time, and exit codes that hold."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import workers

ROOT = Path(__file__).resolve().parents[2]
STATE = {"patched": False}


def patch_and_report() -> tuple[int, bool]:
    """The worker's pid, and whether an earlier worker's patch is still there."""
    seen = STATE["patched"]
    STATE["patched"] = True
    return os.getpid(), seen


def fail() -> None:
    raise ValueError("the worker's own error")


def test_each_call_is_a_fresh_process() -> None:
    first_pid, first_seen = workers.call(patch_and_report)
    second_pid, second_seen = workers.call(patch_and_report)
    assert len({first_pid, second_pid, os.getpid()}) == 3
    assert not first_seen and not second_seen  # a patch dies with its worker
    assert STATE["patched"] is False


def test_a_workers_error_is_raised_in_the_caller() -> None:
    with pytest.raises(ValueError, match="the worker's own error"):
        workers.call(fail)


def test_all_runs_each_bench_in_a_child_with_its_exit_code() -> None:
    script = textwrap.dedent(
        """
        import os, sys, types
        from bench import all as bench_all

        def fake(name, body):
            module = types.ModuleType(f"bench.{name}")
            module.main = body
            sys.modules[module.__name__] = module

        def ok():
            print(f"child {os.getpid()} parent {os.getppid()}", flush=True)
            return 0

        def boom():
            raise RuntimeError("bench failed")

        fake("fake_ok", ok)
        fake("fake_boom", boom)
        fake("fake_exit", lambda: sys.exit(4))
        print(f"runner {os.getpid()}", flush=True)
        sys.exit(bench_all.main(["fake_ok", "fake_boom", "fake_exit"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    out = done.stdout
    assert done.returncode == 1, done.stderr
    runner = out.split("runner ")[1].split()[0]
    child, parent = out.split("child ")[1].split()[0], out.split(" parent ")[1].split()[0]
    assert parent == runner and child != runner
    assert "== bench.fake_ok: exit 0" in out
    assert "== bench.fake_boom: exit 1" in out and "RuntimeError: bench failed" in done.stderr
    assert "== bench.fake_exit: exit 4" in out
    # Every bench ran once: no child came back into the runner's loop.
    assert out.count("== bench.fake_exit\n") == 1 and out.count("== all:") == 1
    assert "failed: fake_boom, fake_exit" in done.stderr


def test_a_small_run_puts_the_engine_benches_in_a_lane_of_their_own() -> None:
    script = textwrap.dedent(
        """
        import os, sys, time, types
        from bench import all as bench_all

        def fake(name, code):
            def main():
                print(f"{name} starts {time.monotonic():.3f}", flush=True)
                time.sleep(1.0)
                print(f"{name} ends {time.monotonic():.3f}", flush=True)
                return code
            module = types.ModuleType(f"bench.{name}")
            module.main = main
            sys.modules[module.__name__] = module

        fake("plan", 0)
        fake("swarm", 3)
        fake("quota", 0)
        sys.exit(bench_all.main(["plan", "swarm", "quota"]))
        """
    )
    env = {**os.environ, "BENCH_SCALE": "small"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 1, done.stderr

    def at(name: str, what: str) -> float:
        return float(out.split(f"{name} {what} ")[1].split()[0])

    # swarm (the engine lane) overlaps plan; quota waits for plan, in the same lane.
    assert at("swarm", "starts") < at("plan", "ends") and at("plan", "starts") < at("swarm", "ends")
    assert at("quota", "starts") >= at("plan", "ends")
    # Each bench's output is printed whole, right before its closing line.
    assert out.index("plan ends") < out.index("== bench.plan: exit 0")
    assert "== bench.swarm: exit 3" in out and "failed: swarm" in done.stderr
    assert "== bench.swarm (lane 2)" in out
