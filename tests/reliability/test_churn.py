"""Scenario 1, churn: clients create, delete and restore bots and post results through the real
API (real PostgreSQL, real containers) while real cleanups run back to back at retention 0 and
grace 0 — every deleted bot is due the moment it is deleted, while the API still lets it be
restored. Each client keeps a ledger of what the server acknowledged.

Afterwards the invariant checker reads the store and the engine directly: every bot the ledger
holds live is live, with its running container and every result acknowledged for it; nothing
else is left (no deleted row, no orphaned result, no stray container); no resource was deleted
twice; no two runs overlapped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from tests.conftest import started_app
from tests.reliability._serve import AUTH
from tests.support.containers import container_state, containers_of
from tests.support.figures import record_figure, scale
from tests.support.store import Store, overlapping
from tests.support.swarm import Swarm
from tests.support.wait import wait_until_async

SECONDS = scale(8, 90)
CLIENTS = scale(3, 6)
MAX_LIVE = 4  # per client: bounds the containers on a shared engine


@dataclass
class Bot:
    id: str
    name: str
    token: str
    state: str = "live"  # live | deleted | purged
    acked: list[int] = field(default_factory=list)
    # What the server answered, in order (op, status, seconds since the epoch): when a bot ends
    # wrong, its history says which of its operations came last.
    history: list[tuple[str, int, float]] = field(default_factory=list)


@dataclass
class Ledger:
    bots: dict[str, Bot] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)


async def client(
    n: int, http: httpx.AsyncClient, image: str, ledger: Ledger, deadline: float
) -> None:
    rng = random.Random(n)
    mine: list[Bot] = []
    made = 0
    while time.monotonic() < deadline:
        live = [b for b in mine if b.state == "live"]
        deleted = [b for b in mine if b.state == "deleted"]
        roll = rng.random()
        if not live or (roll < 0.25 and len(live) < MAX_LIVE):
            made += 1
            name = f"churn-{n}-{made}"
            answer = await http.post("/bots", json={"name": name, "image": image})
            assert answer.status_code == 201, answer.text
            body = answer.json()
            bot = Bot(body["id"], name, body["token"])
            bot.history.append(("create", 201, time.time()))
            mine.append(bot)
            ledger.bots[bot.id] = bot
            ledger.outcomes["create 201"] += 1
        elif roll < 0.45:
            bot = rng.choice(live)
            answer = await http.delete(f"/bots/{bot.id}")
            assert answer.status_code == 200, answer.text
            bot.history.append(("delete", 200, time.time()))
            bot.state = "deleted"
            ledger.outcomes["delete 200"] += 1
        elif roll < 0.65 and deleted:
            bot = rng.choice(deleted)
            answer = await http.post(f"/bots/{bot.id}/restore")
            bot.history.append(("restore", answer.status_code, time.time()))
            ledger.outcomes[f"restore {answer.status_code}"] += 1
            if answer.status_code == 200:
                bot.state = "live"
                bot.token = answer.json()["token"] or bot.token
            elif answer.status_code == 404:
                bot.state = "purged"  # the sweeper was first
            else:  # the container vanished under the restore: the bot stays deleted
                assert answer.status_code in (409, 502), answer.text
        else:
            bot = rng.choice(live)
            seqs = list(range(len(bot.acked), len(bot.acked) + rng.randint(1, 3)))
            answer = await http.post(
                f"/bots/{bot.id}/results",
                json=[{"data": {"seq": s}} for s in seqs],
                headers={"Authorization": f"Bearer {bot.token}"},
            )
            # A live bot's results are always taken: the sweeper must never have touched it.
            assert answer.status_code == 201, (bot.id, answer.text)
            bot.acked.extend(seqs)
            ledger.outcomes["post 201"] += 1


async def test_churn_loses_nothing_live(
    pg_factory: Callable[..., Settings],
    docker_client: Any,
    sample_image: str,
    instance: str,
    cleanup_containers: None,
) -> None:
    settings = pg_factory(
        bot_network="none", container_cleanup_grace_minutes=0, auth_failure_limit=1_000_000
    )
    sweeper = settings.model_copy(update={"bot_retention_days": 0})
    store = Store(sweeper)
    service = CleanupService(settings=sweeper, db=store.engine, fleet=Fleet.from_settings(sweeper))
    ledger = Ledger()
    reports: list[dict[str, Any]] = []
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50005))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH, timeout=60
        ) as http:
            deadline = time.monotonic() + SECONDS
            clients = asyncio.gather(
                *(client(n, http, sample_image, ledger, deadline) for n in range(CLIENTS))
            )

            async def sweep() -> None:
                while not clients.done():
                    reports.append(
                        await service.run(trigger="cli", actor="cli:churn", dry_run=False)
                    )

            await asyncio.gather(clients, sweep())
            # One last sweep on the settled state: whatever was deleted is due now.
            reports.append(await service.run(trigger="cli", actor="cli:churn", dry_run=False))
    finally:
        await ctx.__aexit__(None, None, None)
        await store.close()

    db = Store(settings, checker=True)
    try:
        live = await db.live_bots()
        expected = {b.id for b in ledger.bots.values() if b.state == "live"}
        assert set(live) == expected, "live bots lost or resurrected"
        lost_results = 0
        for bot_id in expected:
            container_id, _ = live[bot_id]
            assert container_state(docker_client, str(container_id)) == "running", bot_id
            stored = sorted(d["seq"] for d in await db.result_data(bot_id))
            lost_results += len(set(ledger.bots[bot_id].acked) - set(stored))
            assert stored == ledger.bots[bot_id].acked, f"results of live bot {bot_id}"
        # Nothing else is left: what was deleted went whole, with its results and container.
        assert await db.bot_ids(live=False) == set()
        assert await db.orphaned_results() == 0
        assert set(containers_of(docker_client, instance)) == {str(c) for c, _ in live.values()}
        assert not await db.double_deletions()
        runs = await db.runs()
        assert not overlapping(runs)
        purged = len(await db.deleted_ids("bots"))
    finally:
        await db.close()
    statuses = Counter(r["status"] for r in reports)
    assert statuses["failed"] == 0, [r["errors"] for r in reports if r["status"] == "failed"]
    ops = sum(ledger.outcomes.values())
    assert ledger.outcomes["restore 200"] + ledger.outcomes["restore 404"] > 0, ledger.outcomes
    record_figure(
        "churn",
        seconds=SECONDS,
        clients=CLIENTS,
        api_operations=ops,
        outcomes=dict(ledger.outcomes),
        cleanup_runs=len(reports),
        run_statuses=dict(statuses),
        bots_purged=purged,
        live_bots_at_end=len(expected),
        live_lost=0,
        acknowledged_results_lost=lost_results,
    )


async def test_churn_on_a_swarm_loses_nothing_live(
    pg_factory: Callable[..., Settings], swarm: Swarm, registry_image: str, instance: str
) -> None:
    """The same churn with BOT_RUNTIME=swarm: bots are services, deletes scale them to zero,
    restores scale them back, and the sweeps purge rows and remove the orphaned services."""
    settings = pg_factory(
        bot_runtime="swarm",
        docker_hosts=swarm.manager.url,
        bot_network="none",
        container_cleanup_grace_minutes=0,
        auth_failure_limit=1_000_000,
    )
    sweeper = settings.model_copy(update={"bot_retention_days": 0})
    store = Store(sweeper)
    fleet = Fleet.from_settings(sweeper)
    service = CleanupService(settings=sweeper, db=store.engine, fleet=fleet)
    ledger = Ledger()
    reports: list[dict[str, Any]] = []
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50006))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH, timeout=60
        ) as http:
            deadline = time.monotonic() + SECONDS
            clients = asyncio.gather(
                *(client(n, http, registry_image, ledger, deadline) for n in range(CLIENTS))
            )

            async def sweep() -> None:
                while not clients.done():
                    reports.append(
                        await service.run(trigger="cli", actor="cli:churn", dry_run=False)
                    )

            await asyncio.gather(clients, sweep())

            # Settled: every deleted bot's task shut down, then one last sweep takes them all.
            # (A task swarm is shutting down still reads "running": only the service's own
            # state, no live task, says it has stopped.)
            live_ids = {b.id for b in ledger.bots.values() if b.state == "live"}

            unsettled: list[Any] = []

            async def settled() -> bool:
                workloads = await fleet.engines["swarm"].list_managed(instance)
                unsettled[:] = [
                    (w.bot_id, w.state, w.task_state, w.detail, ledger.bots[w.bot_id].state)
                    for w in workloads
                    if w.bot_id not in live_ids and w.state == "running"
                ]
                return not unsettled

            try:
                await wait_until_async(settled, timeout=120, message="the swarm to settle")
            except AssertionError as exc:
                stuck = [
                    (ledger.bots[u[0]].history, swarm.service_state(f"botfleet.bot-id={u[0]}"))
                    for u in unsettled
                ]
                raise AssertionError(
                    f"{exc}; still running: {unsettled}; their histories and services: {stuck}"
                ) from exc
            reports.append(await service.run(trigger="cli", actor="cli:churn", dry_run=False))
    finally:
        await ctx.__aexit__(None, None, None)
        await store.close()
    db = Store(settings, checker=True)
    try:
        live = await db.live_bots()
        expected = {b.id for b in ledger.bots.values() if b.state == "live"}
        assert set(live) == expected, "live bots lost or resurrected"
        lost_results = 0
        for bot_id in expected:
            stored = sorted(d["seq"] for d in await db.result_data(bot_id))
            lost_results += len(set(ledger.bots[bot_id].acked) - set(stored))
            assert stored == ledger.bots[bot_id].acked, f"results of live bot {bot_id}"
        assert await db.bot_ids(live=False) == set()
        assert await db.orphaned_results() == 0
        workloads = {w.id: w for w in await fleet.engines["swarm"].list_managed(instance)}
        left = {
            i: (w.bot_id, w.state, w.task_state, w.finished_at)
            for i, w in workloads.items()
            if i not in {str(c) for c, _ in live.values()}
        }
        assert set(workloads) == {str(c) for c, _ in live.values()}, (
            f"a service lost or left: {left}"
        )
        assert not await db.double_deletions()
        assert not overlapping(await db.runs())
        purged = len(await db.deleted_ids("bots"))
        services_removed = len(await db.deleted_ids("services"))
    finally:
        await db.close()
        await fleet.close()
        swarm.remove_services(f"botfleet.instance={instance}")
    statuses = Counter(r["status"] for r in reports)
    assert statuses["failed"] == 0, [r["errors"] for r in reports if r["status"] == "failed"]
    record_figure(
        "churn_swarm",
        seconds=SECONDS,
        clients=CLIENTS,
        api_operations=sum(ledger.outcomes.values()),
        outcomes=dict(ledger.outcomes),
        cleanup_runs=len(reports),
        run_statuses=dict(statuses),
        bots_purged=purged,
        services_removed=services_removed,
        live_bots_at_end=len(expected),
        live_lost=0,
        services_lost=0,
        acknowledged_results_lost=lost_results,
    )
