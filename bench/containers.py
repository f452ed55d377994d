"""Container removal benchmark: botfleet's container stage vs ``docker container prune`` and the
engine's own floor, one ``docker rm`` of exactly the orphans' ids.

    python -m bench.containers                  # 300 orphaned stopped + 20 running + 20 unlabelled
    BENCH_SCALE=small python -m bench.containers  # 5 + 1 + 1, one round
    BENCH_ROUNDS=5 python -m bench.containers     # rounds per contender (default 3; 1 small)
    BENCH_CONTAINER_CONCURRENCY=32 python -m bench.containers  # botfleet's removals in flight

Every contender faces the same population on the real engine: labelled stopped containers that no
live bot owns (to be removed), labelled running ones and unlabelled stopped ones (to be left alone).
botfleet still re-inspects every container and re-checks its bot before removing it; prune lists
and filters; the floor is handed the ids (no listing, no inspect, no checks). The three take turns,
the order rotating every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from bench.report import cleanup_service, scale, write_result
from bench.report import rounds as bench_rounds
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED

IMAGE = "botfleet/sample-bot:latest"
ROOT = Path(__file__).resolve().parents[1]


def populate(
    client: docker.DockerClient, instance: str, orphans: int, running: int, foreign: int
) -> dict[str, list[str]]:
    """Create the population with a small thread pool (setup time is not measured)."""

    def labelled(state: str) -> str:
        labels = {LABEL_MANAGED: "true", LABEL_INSTANCE: instance, LABEL_BOT_ID: str(uuid.uuid4())}
        cmd = ["sleep", "3600"] if state == "running" else ["true"]
        c = client.containers.create(IMAGE, cmd, labels=labels, network_mode="none")
        c.start()
        return str(c.id)

    def unlabelled(_: int) -> str:
        c = client.containers.create(
            IMAGE, ["true"], labels={"bench": instance}, network_mode="none"
        )
        c.start()
        return str(c.id)

    with ThreadPoolExecutor(4) as pool:
        orphan_ids = list(pool.map(lambda _: labelled("exited"), range(orphans)))
        running_ids = list(pool.map(lambda _: labelled("running"), range(running)))
        foreign_ids = list(pool.map(unlabelled, range(foreign)))
    # Wait until every short-lived container has exited.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = client.api.containers(
            all=True, filters={"label": f"{LABEL_INSTANCE}={instance}", "status": "running"}
        )
        if len(states) == running:
            break
        time.sleep(0.2)
    return {"orphans": orphan_ids, "running": running_ids, "foreign": foreign_ids}


def floor(ids: list[str]) -> float:
    """The engine's own removal speed: one ``docker rm`` of exactly these ids."""
    started = time.perf_counter()
    subprocess.run(["docker", "rm", *ids], check=True, capture_output=True)
    return time.perf_counter() - started


def prune(instance: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["docker", "container", "prune", "-f", "--filter", f"label={LABEL_INSTANCE}={instance}"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


async def botfleet_stage(instance: str, db_path: str) -> tuple[float, dict[str, Any]]:
    from botfleet.config import Settings
    from botfleet.store.migrate import upgrade

    url = f"sqlite:///{db_path}"
    await upgrade(Settings(database_url=url, admin_token="x" * 40))  # type: ignore[call-arg]
    async with cleanup_service(
        url,
        botfleet_instance=instance,
        container_cleanup_enabled=True,
        container_cleanup_grace_minutes=0,
        # An experiment's knob (BENCHMARKS.md): removals in flight; the setting's default is 8.
        cleanup_container_concurrency=int(os.environ.get("BENCH_CONTAINER_CONCURRENCY", "8")),
    ) as service:
        started = time.perf_counter()
        report = await service.run(
            trigger="cli", actor="cli:bench", dry_run=False, only=["containers"]
        )
        return time.perf_counter() - started, report


class Timeline:
    """Per-phase busy time of one botfleet round: wraps the calls a removal is made of.

    list: the selection's listing of the engine; inspect: the fresh look at each container;
    bot check: its bot's row read again; remove: the engine's DELETE. Removals run
    ``CLEANUP_CONTAINER_CONCURRENCY`` at a time, so the phases' sums exceed the wall clock.
    """

    PHASES = (
        ("list", "botfleet.runtime.docker", "DockerEngine", "list_managed"),
        ("inspect", "botfleet.runtime.docker", "DockerEngine", "_inspect"),
        ("bot_check", "botfleet.cleanup.container_removal", None, "_read"),
        ("remove", "botfleet.runtime.docker", "DockerEngine", "_remove"),
    )

    def __init__(self) -> None:
        self.busy: dict[str, float] = {name: 0.0 for name, *_ in self.PHASES}
        self.calls: dict[str, int] = {name: 0 for name, *_ in self.PHASES}

    @contextlib.contextmanager
    def installed(self) -> Any:
        import importlib
        import inspect

        undo = []
        for phase, module_name, cls_name, attr in self.PHASES:
            module = importlib.import_module(module_name)
            owner = getattr(module, cls_name) if cls_name else module
            original = getattr(owner, attr)
            undo.append((owner, attr, original))
            setattr(
                owner, attr, self._timed(phase, original, inspect.iscoroutinefunction(original))
            )
        try:
            yield self
        finally:
            for owner, attr, original in undo:
                setattr(owner, attr, original)

    def _timed(self, phase: str, fn: Any, is_async: bool) -> Any:
        if is_async:

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.busy[phase] += time.perf_counter() - started
                    self.calls[phase] += 1

            return timed_async

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.busy[phase] += time.perf_counter() - started
                self.calls[phase] += 1

        return timed

    def figures(self, wall: float, containers: int) -> dict[str, Any]:
        return {
            "wall_seconds": round(wall, 3),
            "containers": containers,
            "phases": {
                name: {
                    "calls": self.calls[name],
                    "busy_seconds": round(self.busy[name], 3),
                    "ms_per_call": round(self.busy[name] / max(1, self.calls[name]) * 1000, 2),
                }
                for name in self.busy
            },
        }


def survivors(client: docker.DockerClient, ids: list[str]) -> int:
    alive = {c["Id"] for c in client.api.containers(all=True)}
    return sum(1 for i in ids if i in alive)


def cleanup(client: docker.DockerClient, ids: list[str]) -> None:
    for cid in ids:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(cid, force=True)


def one_round(
    client: docker.DockerClient,
    name: str,
    orphans: int,
    running: int,
    foreign: int,
    timeline: Timeline | None = None,
) -> dict[str, Any]:
    """One contender on a fresh population of its own; every survivor checked afterwards."""
    instance = f"bench{uuid.uuid4().hex[:8]}"
    pop = populate(client, instance, orphans, running, foreign)
    try:
        extra: dict[str, Any] = {}
        if name == "prune":
            seconds = prune(instance)
        elif name == "floor":
            seconds = floor(pop["orphans"])
        else:
            with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
                if timeline is not None:
                    stack.enter_context(timeline.installed())
                seconds, report = asyncio.run(botfleet_stage(instance, f"{tmp}/b.db"))
            c = report["resources"]["containers"]
            extra = {
                "deleted": c["deleted"],
                "skipped": len(c.get("skipped", [])),
                "status": report["status"],
            }
        removed = orphans - survivors(client, pop["orphans"])
        kept = survivors(client, pop["running"] + pop["foreign"])
        return {
            "seconds": round(seconds, 3),
            "removed": removed,
            "containers_per_s": round(removed / seconds, 1),
            "running_and_unlabelled_kept": f"{kept}/{running + foreign}",
            "ok": removed == orphans and kept == running + foreign,
            **extra,
        }
    finally:
        cleanup(client, pop["orphans"] + pop["running"] + pop["foreign"])


def main() -> int:
    div = 60 if scale() == "small" else 1
    orphans, running, foreign = 300 // div, 20 // div or 1, 20 // div or 1
    # The machine is shared: one pair of runs swings ±30 %. Several rounds, the contenders'
    # order alternating, and the median of each; every round is in the JSON.
    rounds = bench_rounds(3)
    client = docker.from_env(timeout=120)
    subprocess.run(
        [str(ROOT / "examples/sample-bot/build.sh"), IMAGE], check=True, capture_output=True
    )
    names = ("prune", "botfleet", "floor")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            runs[name].append(one_round(client, name, orphans, running, foreign))
            runs[name][-1]["load_1m"] = round(os.getloadavg()[0], 2)
            print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
    figures: dict[str, Any] = {
        "sizes": {"orphans": orphans, "running": running, "unlabelled": foreign},
        "rounds": rounds,
    }
    for name, results in runs.items():
        median_s = statistics.median(x["seconds"] for x in results)
        figures[name] = {
            "seconds": round(median_s, 3),
            "containers_per_s": round(orphans / median_s, 1),
            "each_round": results,
        }
    figures["ratio_containers_per_s"] = round(
        figures["botfleet"]["containers_per_s"] / figures["prune"]["containers_per_s"], 3
    )
    figures["ratio_each_round"] = [
        round(p["seconds"] / b["seconds"], 3)
        for p, b in zip(runs["prune"], runs["botfleet"], strict=True)
    ]
    figures["ratio_vs_floor"] = round(
        figures["botfleet"]["containers_per_s"] / figures["floor"]["containers_per_s"], 3
    )
    figures["ratio_vs_floor_each_round"] = [
        round(f["seconds"] / b["seconds"], 3)
        for f, b in zip(runs["floor"], runs["botfleet"], strict=True)
    ]
    # One more botfleet round, instrumented (not in the medians): where its time goes. Not at
    # the small scale, which must stay quick (`make bench-small`).
    if div == 1:
        timeline = Timeline()
        timed = one_round(client, "botfleet", orphans, running, foreign, timeline)
        figures["timeline"] = timeline.figures(timed["seconds"], orphans)
    figures["load_average_1m"] = os.getloadavg()[0]
    ok = all(x["ok"] for results in runs.values() for x in results)
    figures["all_survivors_kept_and_orphans_removed"] = ok
    write_result("containers", figures)
    print(
        f"ratio botfleet/prune containers/s (medians of {rounds}): "
        f"{figures['ratio_containers_per_s']}  per round {figures['ratio_each_round']}  ok={ok}"
    )
    if "timeline" in figures:
        print(f"timeline of one botfleet round: {figures['timeline']}")
    print(
        f"ratio botfleet/floor containers/s (medians of {rounds}): {figures['ratio_vs_floor']}"
        f"  per round {figures['ratio_vs_floor_each_round']}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
