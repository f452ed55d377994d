"""Scenario 3, kill -9 mid-purge: a real ``botfleet serve`` purges a large seeded store (bench.seed)
in small batches and is killed with SIGKILL mid-run — no shutdown, no cleanup, no last word.

Then, reading PostgreSQL directly: no result is left without its bot; every bot is whole (all its
results) or gone (with an audit record); the live and the retained bots are untouched. After a
restart the dead run shows ``abandoned``, and the next run finishes the job.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx

from bench.seed import SeedSpec, bot_uuid, group_of, seed
from botfleet.store.migrate import upgrade
from tests.conftest import make_settings
from tests.reliability._serve import AUTH, Serve
from tests.support.figures import record_figure, scale
from tests.support.store import CHECKER, Store, overlapping
from tests.support.wait import wait_until_async

BATCH = 20


async def server_sessions(db: Store) -> int:
    """Sessions the dead server still has open in PostgreSQL (it notices a killed client)."""
    return int(
        await db.value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'botfleet%' AND application_name <> :me",
            me=CHECKER,
        )
    )


async def check_whole(db: Store, results_per_bot: int, keep: set[str], expired: set[str]) -> int:
    """The invariant after a crash; returns how many expired bots are gone."""
    assert await db.orphaned_results() == 0, "a result outlived its bot"
    per_bot = await db.results_per_bot()
    present = await db.bot_ids()
    broken = [b for b in present if per_bot.get(b, 0) != results_per_bot]
    assert not broken, f"{len(broken)} bots lost some results but not their row: {broken[:3]}"
    assert keep <= present, f"{len(keep - present)} live or retained bots were purged"
    gone = expired - present
    audited = set(await db.deleted_ids("bots"))
    assert audited == gone, "every purged bot, and only those, has its audit record"
    assert not await db.double_deletions()
    return len(gone)


async def test_kill_9_mid_purge(fresh_pg_database: str, tmp_path: Path, instance: str) -> None:
    settings = make_settings(database_url=fresh_pg_database, botfleet_instance=instance)
    await upgrade(settings)
    spec = SeedSpec(
        bots=scale(20_000, 200_000),
        results_per_bot=scale(3, 5),
        expired_fraction=0.5,
        recent_deleted_fraction=0.1,
    )
    await asyncio.to_thread(seed, fresh_pg_database, spec)
    groups = {str(bot_uuid(spec.seed, i)): group_of(i, spec) for i in range(spec.bots)}
    expired = {b for b, g in groups.items() if g == "expired"}
    keep = set(groups) - expired
    env = {
        "DATABASE_URL": fresh_pg_database,
        "BOTFLEET_INSTANCE": instance,
        "CLEANUP_ENABLED": "true",
        "CLEANUP_STARTUP_DELAY_SECONDS": "0",
        "CLEANUP_INTERVAL_HOURS": "1",
        "CLEANUP_BATCH_SIZE": str(BATCH),
        "CLEANUP_ADAPTIVE": "false",
        "CONTAINER_CLEANUP_ENABLED": "false",
        "DOCKER_HOSTS": "unix:///nonexistent.sock",
    }
    db = Store(settings, checker=True)
    kills: list[int] = []
    rng = random.Random(spec.seed)
    try:
        for _ in range(scale(1, 4)):
            # Killed after a few batches, or (soak) after up to a few hundred of them.
            at_least = await db.audit_count("bots") + BATCH * rng.randint(5, scale(5, 400))
            serve = Serve(tmp_path, **env)
            try:

                async def deleting(at_least: int = at_least) -> bool:
                    return await db.audit_count("bots") >= at_least

                await wait_until_async(
                    deleting, timeout=90, message="the scheduled run to purge a few batches"
                )
                serve.proc.kill()  # SIGKILL: the process gets no say
                await asyncio.to_thread(serve.proc.wait, 30)
            finally:
                serve.stop()
            await wait_until_async(
                lambda: _none(server_sessions(db)),
                timeout=30,
                message="PostgreSQL to drop its sessions",
            )
            gone = await check_whole(db, spec.results_per_bot, keep, expired)
            assert gone < len(expired), "the run finished before the kill: nothing was tested"
            kills.append(gone)
            (dead,) = [r for r in await db.runs() if r["status"] == "running"]
            assert dead["owner"].endswith(f":{serve.proc.pid}")

        # Restart without the scheduler: the dead run is marked, a manual run finishes the job.
        serve = Serve(tmp_path, **{**env, "CLEANUP_ENABLED": "false", "CLEANUP_BATCH_SIZE": "1000"})
        try:
            await asyncio.to_thread(serve.ready)
            runs = await db.runs()
            assert [r["status"] for r in runs] == ["abandoned"] * len(kills)
            async with httpx.AsyncClient(base_url=serve.url, headers=AUTH, timeout=300) as http:
                answer = await http.post("/admin/cleanup?dry_run=false")
            assert answer.status_code == 200, answer.text
            report = answer.json()
        finally:
            serve.stop()
        assert report["status"] == "succeeded", report
        assert report["resources"]["bots"]["deleted"] == len(expired) - kills[-1]
        assert await check_whole(db, spec.results_per_bot, keep, expired) == len(expired)
        assert not overlapping(await db.runs())
    finally:
        await db.close()
    record_figure(
        "kill_9_mid_purge",
        bots=spec.bots,
        results=spec.bots * spec.results_per_bot,
        batch=BATCH,
        kills=len(kills),
        purged_at_each_kill=kills,
        inconsistencies=0,
    )


async def _none(count: Any) -> bool:
    return await count == 0
