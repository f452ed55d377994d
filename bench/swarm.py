"""Swarm benchmark (BOT_RUNTIME=swarm) on a real two-node swarm started here (two dockerd of
the bench's own, tests/support/swarm.py) with the sample bot in the local registry:

    python -m bench.swarm                  # create 100 bots; remove 300 orphaned services
    BENCH_SCALE=small python -m bench.swarm  # 2 and 5, one round

1. **Create**: botfleet creates N bots through its API (one request each, with a database row,
   a token, labels, the service) until swarm runs every one, against a loop of
   ``docker service create --detach`` of the same specs, then the same wait.
2. **Remove**: N orphaned services (this instance's labels, no bot row, no task) removed by
   botfleet's services stage — which lists them, looks at each again right before removing it
   (its version, its tasks, its bot) and audits it — against one ``docker service rm`` of exactly
   those ids.

Rounds alternate the contenders (``BENCH_ROUNDS``, default 5; 1 small); ratios are of the medians.
``BENCH_SWARM_ONLY=create`` or ``remove`` runs one part (the other's figures are left out).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.report import cleanup_service, scale, write_result
from bench.report import rounds as bench_rounds
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-admin-token-" + "x" * 24
# What every bot of both contenders runs (the sample bot's own script would post results
# to MAIN_SERVER_URL every 5 s: work on the machine that the CLI's services do not do).
COMMAND = ("sleep", "3600")


def spec_args(instance: str, image: str) -> list[str]:
    """What botfleet asks swarm for a bot, as ``docker service create`` options."""
    bot = str(uuid.uuid4())
    labels = {LABEL_MANAGED: "true", LABEL_BOT_ID: bot, LABEL_INSTANCE: instance}
    args = ["--detach", "-q", "--name", f"botfleet-{bot}", "--network", "host", "--init"]
    args += ["--restart-condition", "on-failure", "--restart-max-attempts", "3"]
    args += ["--env", f"BOT_ID={bot}", "--env", "BOT_TOKEN=x", "--env", "MAIN_SERVER_URL=x"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}", "--container-label", f"{key}={value}"]
    return [*args, image, *COMMAND]


def services(url: str, instance: str, what: str = "{{.ID}}") -> list[str]:
    """``what`` of each service of ``instance``."""
    ours = f"label={LABEL_INSTANCE}={instance}"
    command = ["docker", "-H", url, "service", "ls", "--filter", ours, "--format", what]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def running_count(url: str, instance: str) -> int:
    return sum(1 for r in services(url, instance, "{{.Replicas}}") if r.startswith("1/1"))


def wait_running(url: str, instance: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while running_count(url, instance) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} services did not all run in {timeout}s")
        time.sleep(0.2)


def remove_all(url: str, instance: str) -> None:
    ids = subprocess.run(
        [
            "docker",
            "-H",
            url,
            "service",
            "ls",
            "-q",
            "--filter",
            f"label={LABEL_INSTANCE}={instance}",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "-H", url, "service", "rm", *ids], capture_output=True)


def wait_idle(urls: list[str], timeout: float = 300) -> None:
    """Until no node runs a bot's container: the next contender must not share the machine
    with the teardown of the last one's services (it lands on whoever goes second)."""
    deadline = time.monotonic() + timeout
    ours = f"label={LABEL_MANAGED}=true"
    while any(
        subprocess.run(
            ["docker", "-H", u, "ps", "-aq", "--filter", ours], capture_output=True, text=True
        ).stdout.split()
        for u in urls
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the nodes still run bots' containers after {timeout}s")
        time.sleep(0.5)


def create_cli(url: str, image: str, count: int) -> float:
    instance = f"cli{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        for _ in range(count):
            subprocess.run(
                ["docker", "-H", url, "service", "create", *spec_args(instance, image)],
                check=True,
                capture_output=True,
            )
        wait_running(url, instance, count)
        return time.perf_counter() - started
    finally:
        remove_all(url, instance)


async def create_botfleet(url: str, image: str, count: int, db: str) -> float:
    from botfleet.app import create_app
    from botfleet.config import Settings
    from botfleet.store.migrate import upgrade

    instance = f"bot{uuid.uuid4().hex[:8]}"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{db}",
        admin_token=TOKEN,
        bot_runtime="swarm",
        docker_hosts=url,
        botfleet_instance=instance,
        cleanup_enabled=False,
        bot_image_pull="if-not-present",
    )
    await upgrade(settings)
    app = create_app(settings, migrate=False)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50400))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://b", headers=headers, timeout=120
            ) as api:
                started = time.perf_counter()
                for i in range(count):
                    # The command of spec_args: both contenders run the same workload.
                    bot = {"name": f"b{i}", "image": image, "command": list(COMMAND)}
                    answer = await api.post("/bots", json=bot)
                    answer.raise_for_status()
                await asyncio.to_thread(wait_running, url, instance, count)
                return time.perf_counter() - started
    finally:
        remove_all(url, instance)


def orphans(url: str, image: str, count: int) -> tuple[str, list[str]]:
    """``count`` services of a new instance, no replicas (no task: nothing runs), no bot rows."""
    instance = f"orph{uuid.uuid4().hex[:8]}"
    ids = []
    for _ in range(count):
        args = spec_args(instance, image)
        args.insert(0, "--replicas=0")
        ids.append(
            subprocess.run(
                ["docker", "-H", url, "service", "create", *args],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    return instance, ids


def remove_cli(url: str, ids: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "-H", url, "service", "rm", *ids], check=True, capture_output=True)
    return time.perf_counter() - started


async def remove_botfleet(url: str, instance: str, db: str) -> tuple[float, dict[str, Any]]:
    from botfleet.config import Settings
    from botfleet.store.migrate import upgrade

    database = f"sqlite:///{db}"
    await upgrade(Settings(database_url=database, admin_token="x" * 40))  # type: ignore[call-arg]
    async with cleanup_service(
        database,
        bot_runtime="swarm",
        docker_hosts=url,
        botfleet_instance=instance,
        container_cleanup_enabled=True,
        container_cleanup_grace_minutes=0,
    ) as service:
        started = time.perf_counter()
        report = await service.run(trigger="cli", actor="cli:bench", dry_run=False, only="services")
        return time.perf_counter() - started, report["resources"]["services"]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.support.swarm import push, running_swarm

    creates, removals = (2, 5) if scale() == "small" else (100, 300)
    only = os.environ.get("BENCH_SWARM_ONLY", "")
    if only not in ("", "create", "remove"):
        raise SystemExit(f"BENCH_SWARM_ONLY must be create or remove, not {only!r}")
    rounds = bench_rounds(5)
    subprocess.run([str(ROOT / "examples/sample-bot/build.sh")], check=True, capture_output=True)
    image = push("botfleet/sample-bot:latest", "botfleet/sample-bot:latest")
    results: dict[str, list[float]] = {"create_cli": [], "create_botfleet": [], "rm_cli": []}
    results["rm_botfleet"] = []
    ok = True
    with running_swarm() as swarm, tempfile.TemporaryDirectory() as tmp:
        url = swarm.manager.url
        for r in range(rounds):
            order = ("cli", "botfleet") if r % 2 == 0 else ("botfleet", "cli")
            for name in order if only != "remove" else ():
                if name == "cli":
                    results["create_cli"].append(create_cli(url, image, creates))
                else:
                    db = f"{tmp}/c{r}.db"
                    results["create_botfleet"].append(
                        asyncio.run(create_botfleet(url, image, creates, db))
                    )
                print(f"round {r + 1} create {name}: {results['create_' + name][-1]:.2f}s")
                wait_idle([url, swarm.worker.url])
            for name in order if only != "create" else ():
                instance, ids = orphans(url, image, removals)
                if name == "cli":
                    results["rm_cli"].append(remove_cli(url, ids))
                else:
                    seconds, stage = asyncio.run(remove_botfleet(url, instance, f"{tmp}/r{r}.db"))
                    results["rm_botfleet"].append(seconds)
                    ok = ok and stage["deleted"] == removals and stage["outcome"] == "done"
                left = services(url, instance)
                ok = ok and not left
                print(f"round {r + 1} rm {name}: {results['rm_' + name][-1]:.2f}s left={len(left)}")
    if only:  # one part: printed, and the results file (both parts) is left as it is
        cli, ours = (
            results[f"{only}_cli" if only == "create" else "rm_cli"],
            results[f"{only}_botfleet" if only == "create" else "rm_botfleet"],
        )
        ratio = statistics.median(cli) / statistics.median(ours)
        print(f"{only}: cli {cli} botfleet {ours} ratio {ratio:.3f} ok={ok}")
        return 0 if ok else 1
    med = {k: statistics.median(v) for k, v in results.items()}
    figures = {
        "sizes": {"creates": creates, "removals": removals},
        "rounds": rounds,
        "seconds_each_round": {k: [round(x, 3) for x in v] for k, v in results.items()},
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "create_bots_per_s": round(creates / med["create_botfleet"], 2),
        "create_cli_per_s": round(creates / med["create_cli"], 2),
        "ratio_create": round(med["create_cli"] / med["create_botfleet"], 3),
        "remove_services_per_s": round(removals / med["rm_botfleet"], 1),
        "remove_cli_per_s": round(removals / med["rm_cli"], 1),
        "ratio_remove": round(med["rm_cli"] / med["rm_botfleet"], 3),
        "every_orphan_removed": ok,
    }
    write_result("swarm", figures)
    print(
        f"create: botfleet/loop of service create = {figures['ratio_create']}; "
        f"remove: botfleet/service rm = {figures['ratio_remove']}  ok={ok}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
