"""Scenario 5, concurrency: three ``botfleet serve`` replicas on one PostgreSQL database, each
scheduling a run every 0.2 s, while ten manual triggers at a time hit them in parallel and new
work (expired bots with results, orphaned containers) keeps arriving.

Read from the store and the engine afterwards: no two runs' intervals overlap, no resource is in
the audit trail twice (and the engine destroyed each container once), every contended trigger
was answered 409 (with the running run's id, unless it came in the instant before that run
recorded itself), and everything due went.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from botfleet.store.migrate import upgrade
from tests.conftest import make_settings
from tests.reliability._serve import AUTH, Serve
from tests.support.containers import EventLog, containers_of, labels_for
from tests.support.figures import record_figure, scale
from tests.support.store import Store, overlapping
from tests.support.wait import wait_until_async

SECONDS = scale(6, 60)
TRIGGERS = 10
SECOND = 1 / 3600  # CLEANUP_INTERVAL_HOURS


async def test_three_replicas_and_ten_triggers_never_overlap(
    fresh_pg_database: str,
    tmp_path: Path,
    instance: str,
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    settings = make_settings(database_url=fresh_pg_database, botfleet_instance=instance)
    await upgrade(settings)
    env = {
        "DATABASE_URL": fresh_pg_database,
        "BOTFLEET_INSTANCE": instance,
        "CLEANUP_ENABLED": "true",
        "CLEANUP_STARTUP_DELAY_SECONDS": "0",
        "CLEANUP_INTERVAL_HOURS": str(0.2 * SECOND),
        "CLEANUP_RETRY_MINUTES": str(0.2 / 60),
        "CLEANUP_ADAPTIVE": "false",
        "CLEANUP_BATCH_SIZE": "50",
        "CONTAINER_CLEANUP_GRACE_MINUTES": "0",
        "BOT_NETWORK": "none",
    }
    replicas = [Serve(tmp_path, **env) for _ in range(3)]
    db = Store(settings, checker=True)
    events = EventLog(sample_image)
    bots: list[uuid.UUID] = []
    orphans: list[str] = []
    codes: Counter[int] = Counter()
    named = 0  # 409s naming the run in progress
    try:
        for replica in replicas:
            await asyncio.to_thread(replica.ready)
        events.start()
        async with httpx.AsyncClient(headers=AUTH, timeout=60) as http:
            deadline = time.monotonic() + SECONDS
            rounds = 0
            while time.monotonic() < deadline:
                rounds += 1
                bots += await db.seed_bots(50, results_per_bot=2)
                for _ in range(3):
                    made = docker_client.containers.create(
                        sample_image,
                        command=["true"],
                        labels=labels_for(instance, uuid.uuid4()),
                        network_mode="none",
                    )
                    orphans.append(made.id)
                burst = [
                    http.post(f"{replicas[i % 3].url}/admin/cleanup?dry_run=false")
                    for i in range(TRIGGERS)
                ]
                for answer in await asyncio.gather(*burst):
                    codes[answer.status_code] += 1
                    if answer.status_code == 409:
                        body = answer.json()
                        assert set(body) == {"detail", "run_id"}, body
                        # null in the instant between a run taking the lock and recording
                        # itself (or finishing its record and letting the lock go)
                        named += body["run_id"] is not None

        async def drained() -> bool:
            left = await db.bot_ids()
            return not left and not containers_of(docker_client, instance)

        await wait_until_async(
            drained, timeout=60, message="the replicas to clean up everything due"
        )
        await asyncio.to_thread(events.stop)
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            await asyncio.to_thread(replica.wait, 30)
        runs = await db.runs()
        double = await db.double_deletions()
        audited_bots = await db.deleted_ids("bots")
        audited_containers = await db.deleted_ids("containers")
    finally:
        for replica in replicas:
            replica.stop()
        events.close()
        await db.close()
    destroyed = Counter(cid for cid, action in events.actions(orphans) if action == "destroy")
    finished = [r for r in runs if r["finished_at"] is not None]
    real = [r for r in finished if not r["dry_run"]]
    record_figure(
        "concurrency",
        replicas=3,
        seconds=SECONDS,
        trigger_rounds=rounds,
        triggers=sum(codes.values()),
        answers={str(k): v for k, v in sorted(codes.items())},
        conflicts_naming_the_run=named,
        runs=len(finished),
        scheduled_runs=sum(r["trigger"] == "schedule" for r in real),
        manual_runs=sum(r["trigger"] == "manual" for r in real),
        overlapping_runs=len(overlapping(finished)),
        double_deletions=sum(len(v) for v in double.values()),
        bots_purged=len(audited_bots),
        containers_removed=len(audited_containers),
    )
    assert set(codes) <= {200, 409}, codes
    assert codes[409] > 0 and codes[200] > 0, codes
    assert named > 0
    assert not overlapping(finished), overlapping(finished)
    assert not double, double
    assert sorted(audited_bots) == sorted(map(str, bots))
    assert sorted(audited_containers) == sorted(orphans)
    assert set(destroyed) == set(orphans) and set(destroyed.values()) == {1}
    assert not [r for r in runs if r["status"] in ("running", "failed", "abandoned")]
    assert {r["trigger"] for r in real} == {"schedule", "manual"}
    assert len({r["owner"] for r in real}) >= 2, Counter(r["owner"] for r in real)
    for replica in replicas:
        assert "Traceback" not in replica.log(), replica.log()[-3000:]
