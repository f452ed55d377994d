"""The guard check: remove each safety guard of the cleanup, one at a time, and show that at least
one test fails. Done for real, on a copy of the working tree — never in the checkout itself.

    .venv/bin/python -m tests.reliability.guardcheck [--scratch /tmp/guardcheck] [--json out.json]

For each guard: copy the pristine module over the scratch copy, apply one exact textual edit
(which must match exactly once, or the check itself fails: the guard moved), run the tests that
should notice with ``PYTHONPATH`` pointing at the copy, and list the ones that failed. The same
tests are first run once on the unmodified copy: they must all pass there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "data",
    "test-artifacts",
    "*.db",
    "*.db-*",
)
R = "tests/reliability"


@dataclass(frozen=True)
class Guard:
    name: str
    where: str  # file, relative to the root
    old: str  # exact text of the guard
    new: str  # the same code without it
    tests: tuple[str, ...]


GUARDS = (
    Guard(
        "grace period",
        "botfleet/cleanup/eligibility.py",
        "    if age < grace:\n",
        "    if False:  # GUARD REMOVED: age < grace\n",
        (
            f"{R}/test_retention_boundaries.py::test_container_grace_boundary",
            f"{R}/test_dry_run_fidelity.py",
        ),
    ),
    Guard(
        "SQL re-check of deleted_at (each batch's DELETE re-states the condition)",
        "botfleet/cleanup/purge_bots.py",
        "    DELETE FROM bots b WHERE {which} AND {p.eligible}\n",
        "    DELETE FROM bots b WHERE {which}\n",
        (
            "tests/cleanup/test_restore_race.py",
            f"{R}/test_paused_sweep.py",
            f"{R}/test_churn.py",
        ),
    ),
    Guard(
        "label re-check (this instance's three labels, checked client-side)",
        "botfleet/runtime/base.py",
        "        return (\n"
        '            self.labels.get(LABEL_MANAGED) == "true"\n'
        "            and self.labels.get(LABEL_INSTANCE) == instance\n"
        "            and bool(self.labels.get(LABEL_BOT_ID))\n"
        "        )\n",
        "        return True  # GUARD REMOVED: the label check\n",
        (f"{R}/test_foreign_resources.py",),
    ),
    Guard(
        "running-state check",
        "botfleet/cleanup/eligibility.py",
        "    if container.state not in REMOVABLE_STATES:\n",
        "    if False:  # GUARD REMOVED: container.state not in REMOVABLE_STATES\n",
        (f"{R}/test_dry_run_fidelity.py", f"{R}/test_paused_sweep.py"),
    ),
    Guard(
        "live-bot re-check (the bot's row read again right before removal)",
        "botfleet/cleanup/container_removal.py",
        "            info, bot, instance=instance,",
        "            info, None, instance=instance,",  # the row read again is not used
        (
            f"{R}/test_faults.py::test_dockerd_restarted_mid_run",
            f"{R}/test_faults.py::test_no_container_is_removed_without_a_fresh_look_at_its_bot",
            "tests/cleanup/test_restore_race.py",
        ),
    ),
    Guard(
        "live-bot re-check of a group (the bots' rows read after the group's look)",
        "botfleet/cleanup/container_removal.py",
        '            bot = bots.get(info.bot_id or "")\n',
        "            bot = None  # GUARD REMOVED: the rows read again are not used\n",
        (
            "tests/cleanup/test_services_concurrency.py"
            "::test_a_bot_restored_while_its_group_is_looked_at_keeps_its_service",
        ),
    ),
    Guard(
        "swarm task containers (never removed one by one: their service goes)",
        "botfleet/cleanup/eligibility.py",
        "    if container.swarm_task:\n",
        "    if False:  # GUARD REMOVED: container.swarm_task\n",
        (
            "tests/cleanup/test_services_stage.py"
            "::test_a_swarm_tasks_container_is_never_removed_by_the_container_stage",
        ),
    ),
    Guard(
        "a service's version as the stored plan saw it",
        "botfleet/cleanup/container_selection.py",
        "        if decision.eligible and planned is not None and c.version != planned:\n",
        "        if False:  # GUARD REMOVED: the plan's version\n",
        (
            "tests/cleanup/test_services_stage.py"
            "::test_a_service_changed_since_the_plan_is_kept_even_with_no_owner",
        ),
    ),
    Guard(
        "a service's version re-checked right before its removal",
        "botfleet/cleanup/container_removal.py",
        "    if target.version is not None and info.version != target.version:\n",
        "    if False:  # GUARD REMOVED: the version check\n",
        (
            "tests/cleanup/test_services_stage.py"
            "::test_a_service_changed_between_selection_and_removal_is_kept",
        ),
    ),
    Guard(
        "a service runs while any of its tasks has not stopped",
        "botfleet/runtime/swarm_specs.py",
        "    live = [t for t in ordered if not _final(t)]\n",
        "    live: list[Any] = []  # GUARD REMOVED: running tasks\n",
        ("tests/cleanup/test_services_stage.py::test_exactly_the_orphaned_services_go",),
    ),
    Guard(
        "lock check (before every batch)",
        "botfleet/cleanup/run.py",
        "        if not await self.lock.still_held():\n            raise LockLost()\n",
        "        if False:  # GUARD REMOVED: the lock check\n            raise LockLost()\n",
        (f"{R}/test_lost_lock.py",),
    ),
)


def pytest(scratch: Path, tests: tuple[str, ...]) -> tuple[int, list[str], float]:
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    env.pop("BOTFLEET_SOAK", None)
    env.pop("BOTFLEET_FIGURES", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    failed = sorted(set(re.findall(r"^FAILED (\S+)", done.stdout, re.M)))
    # Each pytest's whole output stays beside the copy, for a failure to be read afterwards.
    logs = scratch / "guardcheck-logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{len(list(logs.iterdir())):02d}.log").write_text(done.stdout + done.stderr)
    return done.returncode, failed, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/guardcheck"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", default=None, help="run only guards whose name contains this")
    args = parser.parse_args(argv)
    scratch: Path = args.scratch
    if scratch.resolve() == ROOT:
        parser.error("the scratch copy must not be the checkout itself")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(ROOT, scratch, ignore=IGNORE)
    probe = subprocess.run(
        [sys.executable, "-c", "import botfleet; print(botfleet.__file__)"],
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(scratch)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(scratch)), f"botfleet imports from {probe.stdout}"
    guards = [g for g in GUARDS if not args.only or args.only in g.name]
    everything = tuple(sorted({t for g in guards for t in g.tests}))
    code, failed, took = pytest(scratch, everything)
    print(f"baseline (no guard removed): exit {code}, {len(failed)} failed, {took:.0f}s")
    if code != 0:
        print("\n".join(failed))
        print(f"(the output: {scratch / 'guardcheck-logs' / '00.log'})")
        return 2
    results = []
    for guard in guards:
        path = scratch / guard.where
        pristine = (ROOT / guard.where).read_text()
        assert pristine.count(guard.old) == 1, f"{guard.name}: the guard's text moved"
        path.write_text(pristine.replace(guard.old, guard.new))
        try:
            code, failed, took = pytest(scratch, guard.tests)
        finally:
            path.write_text(pristine)
        print(f"{guard.name}: exit {code}, {len(failed)} failed in {took:.0f}s")
        for test in failed:
            print(f"    {test}")
        results.append({"guard": guard.name, "file": guard.where, "failed": failed})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    caught = all(r["failed"] for r in results)
    print("every guard is caught by a test" if caught else "SOME GUARD IS NOT CAUGHT")
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main())
