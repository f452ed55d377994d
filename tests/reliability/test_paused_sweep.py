"""Scenario 2, create-during-sweep and restore-during-purge: a real run is paused right after its
selection (the service's ``pause_hook``) while, through the real API and the real engine, a
selected bot is restored (its container started again), another selected bot's container is
replaced by a new one with the same name (removed by hand, the bot restored into a fresh one),
and new bots are created — one reusing the name of a bot that is about to be purged.

The run resumes: nothing live is deleted, the changed items are reported as skipped, and what was
really due still goes. The sweeper runs at retention 0 (every deleted bot is due at once) while
the API keeps the default retention, so a restore is still allowed: the most hostile mix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from tests.conftest import started_app
from tests.reliability._serve import AUTH
from tests.support.containers import container_state
from tests.support.figures import record_figure
from tests.support.store import Store
from tests.support.wait import wait_until_async


class Api:
    """The operator and the bots, through the real ASGI app: every acknowledged result noted."""

    def __init__(self, http: httpx.AsyncClient, image: str) -> None:
        self.http = http
        self.image = image
        self.acked: dict[str, list[int]] = {}

    async def create(self, name: str) -> dict[str, Any]:
        answer = await self.http.post("/bots", json={"name": name, "image": self.image})
        assert answer.status_code == 201, answer.text
        bot: dict[str, Any] = answer.json()
        self.acked[bot["id"]] = []
        return bot

    async def post(self, bot: dict[str, Any], count: int = 3) -> None:
        for _ in range(count):
            seq = len(self.acked[bot["id"]])
            answer = await self.http.post(
                f"/bots/{bot['id']}/results",
                json={"data": {"seq": seq}},
                headers={"Authorization": f"Bearer {bot['token']}"},
            )
            assert answer.status_code == 201, answer.text
            self.acked[bot["id"]].append(seq)

    async def delete(self, bot: dict[str, Any]) -> None:
        assert (await self.http.delete(f"/bots/{bot['id']}")).status_code == 200

    async def restore(self, bot: dict[str, Any]) -> dict[str, Any]:
        answer = await self.http.post(f"/bots/{bot['id']}/restore")
        assert answer.status_code == 200, answer.text
        restored: dict[str, Any] = answer.json()
        return restored


async def test_create_restore_and_replace_while_a_run_is_paused(
    settings_factory: Callable[..., Settings],
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    settings = settings_factory(bot_network="none", container_cleanup_grace_minutes=0)
    sweeper = settings.model_copy(update={"bot_retention_days": 0})
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50004))
    store = Store(sweeper)
    db = Store(settings, checker=True)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as c:
            api = Api(c, sample_image)
            restored, replaced, doomed, renamed, bystander = [
                await api.create(f"race-{role}")
                for role in ("restored", "replaced", "doomed", "renamed", "bystander")
            ]
            for bot in (restored, replaced, doomed, renamed, bystander):
                await api.post(bot)
            for bot in (restored, replaced, doomed, renamed):
                await api.delete(bot)
            during: dict[str, dict[str, Any]] = {}

            async def meanwhile() -> None:
                during["restored"] = await api.restore(restored)
                docker_client.api.remove_container(replaced["container_id"], force=True)
                during["replaced"] = await api.restore(replaced)
                during["renamed"] = await api.create(renamed["name"])
                during["new"] = await api.create("race-new")
                for bot in (during["renamed"], during["new"], restored):
                    await api.post(bot)
                if during["replaced"]["token"]:  # a fresh container means a fresh token
                    await api.post({**replaced, "token": during["replaced"]["token"]})

            service = CleanupService(
                settings=sweeper, db=store.engine, fleet=Fleet.from_settings(sweeper)
            )
            report = await service.run(
                trigger="cli", actor="cli:race", dry_run=False, pause_hook=meanwhile
            )
    finally:
        await ctx.__aexit__(None, None, None)
        await store.close()

    try:
        # The invariant checker: rows, results and containers as the store and engine see them.
        live = await db.live_bots()
        per_bot = await db.results_per_bot()
        survivors = [restored, replaced, bystander, during["renamed"], during["new"]]
        assert set(live) == {b["id"] for b in survivors}
        for bot in survivors:
            container_id, _engine = live[bot["id"]]
            assert container_state(docker_client, str(container_id)) == "running", bot["name"]
            seqs = sorted(d["seq"] for d in await db.result_data(bot["id"]))
            assert seqs == sorted(api.acked[bot["id"]]), bot["name"]
        new_container = live[replaced["id"]][0]
        assert new_container != replaced["container_id"]
        assert docker_client.containers.get(new_container).name == f"botfleet-{replaced['id']}"
        for bot in (doomed, renamed):
            assert bot["id"] not in await db.bot_ids() and bot["id"] not in per_bot
            assert container_state(docker_client, bot["container_id"]) is None
        assert set(await db.deleted_ids("bots")) == {doomed["id"], renamed["id"]}
        assert set(await db.deleted_ids("containers")) == {
            doomed["container_id"],
            renamed["container_id"],
        }
        assert not await db.double_deletions()
        assert await db.orphaned_results() == 0
    finally:
        await db.close()

    # The report says what was left, and why.
    bots = report["resources"]["bots"]
    assert (bots["found"], bots["deleted"]) == (4, 2), bots
    skipped = {s["id"]: s["reason"] for s in bots["skipped"]}
    assert skipped[restored["id"]] == skipped[replaced["id"]] == "changed since selection: restored"
    stage = report["resources"]["containers"]
    assert (stage["found"], stage["deleted"]) == (4, 2), stage
    reasons = {s["id"]: s["reason"] for s in stage["skipped"]}
    assert reasons[restored["container_id"]] == f"bot {restored['id']} is live"
    assert reasons[replaced["container_id"]] == "already gone"
    assert report["status"] == "succeeded", report
    record_figure(
        "paused_sweep",
        backend="sqlite" if settings.is_sqlite else "postgres",
        races=4,
        live_lost=0,
        skipped_reported=len(skipped) + len(reasons),
    )


async def test_a_restore_that_commits_while_the_batch_waits_wins(
    pg_factory: Callable[..., Settings],
    docker_client: Any,
    sample_image: str,
    cleanup_containers: None,
) -> None:
    """The race no pause can stage: a restore through the API takes the bot's row first, the
    batch's DELETE queues behind it, the restore commits. PostgreSQL re-checks the DELETE's
    condition on the restored row (the SQL re-check of ``deleted_at``), so the bot stays."""
    settings = pg_factory(bot_network="none", container_cleanup_grace_minutes=0)
    sweeper = settings.model_copy(update={"bot_retention_days": 0})
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50006))
    store = Store(sweeper)
    db = Store(settings, checker=True)
    blocker = await asyncpg.connect(settings.database_url)
    watcher = await asyncpg.connect(settings.database_url)  # pg_stat_activity: a fresh look each
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as c:
            api = Api(c, sample_image)
            bot = await api.create("race-row-lock")
            await api.post(bot)
            await api.delete(bot)
            # Someone holds the row: the restore queues on it first, then the batch's DELETE.
            await blocker.execute("BEGIN")
            await blocker.execute("SELECT 1 FROM bots WHERE id = $1 FOR UPDATE", bot["id"])

            async def waiting(n: int) -> bool:
                count = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND application_name = 'botfleet'"
                )
                return bool(count >= n)

            restore = asyncio.create_task(api.restore(bot))
            await wait_until_async(
                lambda: waiting(1), timeout=30, message="the restore to wait on the row"
            )
            service = CleanupService(
                settings=sweeper, db=store.engine, fleet=Fleet.from_settings(sweeper)
            )
            run = asyncio.create_task(service.run(trigger="cli", actor="cli:race", dry_run=False))
            await wait_until_async(
                lambda: waiting(2), timeout=30, message="the batch's DELETE to queue behind it"
            )
            await blocker.execute("ROLLBACK")
            restored = await asyncio.wait_for(restore, 30)
            report = await asyncio.wait_for(run, 30)
        assert restored["deleted_at"] is None
        assert set(await db.live_bots()) == {bot["id"]}
        assert sorted(d["seq"] for d in await db.result_data(bot["id"])) == api.acked[bot["id"]]
        assert container_state(docker_client, restored["container_id"]) == "running"
        assert await db.audit_count("bots") == 0 and await db.audit_count("containers") == 0
        stage = report["resources"]["bots"]
        assert (stage["found"], stage["deleted"]) == (1, 0), stage
        assert stage["skipped"] == [
            {"id": bot["id"], "reason": "changed since selection: restored"}
        ]
    finally:
        await blocker.close()
        await watcher.close()
        await ctx.__aexit__(None, None, None)
        await store.close()
        await db.close()
    record_figure("restore_racing_a_batch", races=1, live_lost=0)
