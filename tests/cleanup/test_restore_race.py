"""A restore racing a purge: the run pauses between selection and delete, the test restores a bot
(``deleted_at`` back to NULL), and the bot, its results and its container all survive."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botfleet.config import Settings
from tests.support.cleanup import Clock, days, make_service
from tests.support.containers import Containers, containers, docker_time, labels_for
from tests.support.store import Store, store
from tests.support.wait import wait_until_async

__all__ = ["containers", "store"]


async def test_restore_between_selection_and_delete_keeps_bot_and_results(
    settings: Settings, store: Store
) -> None:
    now = datetime.now(UTC)
    racing = await store.bot(deleted_at=now - days(9), results=5)
    doomed = await store.bot(deleted_at=now - days(10), results=2)
    service = make_service(settings, store, Clock(now))

    async def restore() -> None:
        await store.restore(racing)

    report = await service.run(
        trigger="manual", actor="api:test", dry_run=False, only="bots", pause_hook=restore
    )
    bots = report["resources"]["bots"]
    assert (bots["found"], bots["deleted"]) == (2, 1)
    assert report["resources"]["bot_results"]["deleted"] == 2
    assert await store.bot_ids() == {str(racing)}
    assert await store.results_of(racing) == 5
    assert await store.results_of(doomed) == 0
    assert {"id": str(racing), "reason": "changed since selection: restored"} in bots["skipped"]
    assert [a["resource_id"] for a in await store.audit(report["run_id"])] == [str(doomed)]


class OneAtATime:
    """A governor of one row per batch, counting the batches it saw commit."""

    pause_seconds = 0.0

    def __init__(self) -> None:
        self.batches = 0

    def next_size(self) -> int:
        return 1

    def observe(self, seconds: float, rows: int) -> None:
        self.batches += 1


async def test_a_bot_restored_between_batches_is_not_purged(
    settings: Settings, store: Store
) -> None:
    now = datetime.now(UTC)
    first = await store.bot(deleted_at=now - days(30), results=1)
    later = await store.bot(deleted_at=now - days(20), results=3)
    last = await store.bot(deleted_at=now - days(10), results=1)
    governor = OneAtATime()
    service = make_service(settings, store, Clock(now), governor=governor)
    restored = False
    make_lock = service._lock

    def lock() -> Any:
        """The executor asks the lock before every batch: restore right there, after batch 1."""
        real = make_lock()
        still_held = real.still_held

        async def check() -> bool:
            nonlocal restored
            if governor.batches == 1 and not restored:
                await store.restore(later)
                restored = True
            return await still_held()

        real.still_held = check  # type: ignore[method-assign]
        return real

    service._lock = lock  # type: ignore[method-assign]
    report = await service.run(trigger="cli", actor="cli:test", dry_run=False, only=["bots"])
    assert restored
    assert await store.bot_ids() == {str(later)}
    assert await store.results_of(later) == 3
    bots = report["resources"]["bots"]
    assert (bots["found"], bots["deleted"]) == (3, 2)
    assert report["resources"]["bot_results"]["deleted"] == 2
    assert {str(first), str(last)}.isdisjoint(await store.bot_ids())


async def test_a_container_whose_bot_is_restored_is_not_removed(
    settings_factory: Any, store: Store, containers: Containers, instance: str
) -> None:
    now = datetime.now(UTC)
    bot = await store.bot(deleted_at=now - days(1))
    stopped = containers.make("exited", labels_for(instance, bot))
    finished = docker_time(containers.inspect(stopped)["State"]["FinishedAt"])
    settings = settings_factory(container_cleanup_grace_minutes=1)
    service = make_service(settings, store, Clock(finished + timedelta(minutes=5)))

    async def restore() -> None:
        await store.restore(bot)

    report = await service.run(
        trigger="cli", actor="cli:test", dry_run=False, only="containers", pause_hook=restore
    )
    result = report["resources"]["containers"]
    assert (result["found"], result["deleted"]) == (1, 0)
    assert result["skipped"] == [{"id": stopped, "reason": f"bot {bot} is live", "engine": "local"}]
    assert containers.state(stopped) == "exited"


@pytest.mark.parametrize("walk", ["heap-walk", "deleted-at-index"])
async def test_postgres_delete_restates_its_condition_under_a_concurrent_restore(
    fresh_pg_database: str, instance: str, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch selects the bot, then its DELETE waits on the restore's row lock; once the
    restore commits, PostgreSQL re-checks the DELETE's condition on the new row version and the
    bot stays. Both ways of choosing victims: by TID (dense expired bots), where the new version's
    other TID alone would keep it, and by id through the ``deleted_at`` index (sparse ones),
    where only the re-stated ``deleted_at`` condition does."""
    import asyncio

    import asyncpg

    from botfleet.cleanup import purge_bots
    from botfleet.store.migrate import upgrade
    from tests.conftest import make_settings

    if walk == "deleted-at-index":

        async def too_sparse(*_args: Any) -> None:
            return None

        monkeypatch.setattr(purge_bots.HeapWalk, "start", too_sparse)
    settings = make_settings(database_url=fresh_pg_database, botfleet_instance=instance)
    await upgrade(settings)
    store = Store(settings)
    try:
        now = datetime.now(UTC)
        racing = await store.bot(deleted_at=now - days(10), results=3)
        service = make_service(settings, store, Clock(now))
        conn = await asyncpg.connect(fresh_pg_database)
        watcher = await asyncpg.connect(fresh_pg_database)  # stats are per transaction
        try:
            restore = conn.transaction()
            await restore.start()
            await conn.execute("UPDATE bots SET deleted_at = NULL WHERE id = $1", racing)
            run = asyncio.create_task(
                service.run(trigger="cli", actor="cli:test", dry_run=False, only="bots")
            )

            async def blocked() -> bool:
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'botfleet'"
                    " AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM bots%'"
                )
                assert waiting or not run.done(), run.result()["errors"]
                return bool(waiting)

            await wait_until_async(
                blocked, timeout=10, message="the purge to block on the restore's row lock"
            )
            await restore.commit()
            report = await run
        finally:
            await conn.close()
            await watcher.close()
        bots = report["resources"]["bots"]
        assert (bots["found"], bots["deleted"]) == (1, 0)
        assert report["status"] == "succeeded"
        assert await store.bot_ids() == {str(racing)}
        assert await store.results_of(racing) == 3
        assert await store.audit(report["run_id"]) == []
    finally:
        await store.close()


async def test_a_restore_after_the_last_inspect_and_before_the_bot_check_keeps_the_container(
    settings_factory: Any,
    store: Store,
    containers: Containers,
    instance: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The narrowest window: the restore commits in the removal's own thread, after the
    container's last inspect, just before its bot is read. On a SQLite file that read is the
    removal's own (cleanup/bot_lookup.py); on PostgreSQL a query that starts after the request."""
    from botfleet.cleanup import bot_lookup, container_selection
    from botfleet.cleanup.bot_lookup import SqliteBotReader

    now = datetime.now(UTC)
    bot = await store.bot(deleted_at=now - days(1))
    stopped = containers.make("exited", labels_for(instance, bot))
    finished = docker_time(containers.inspect(stopped)["State"]["FinishedAt"])
    settings = settings_factory(container_cleanup_grace_minutes=1)
    reads: list[str] = []
    if settings.is_sqlite:
        path = str(settings.sqlite_path)
        real_get = SqliteBotReader.get

        def restore_then_read(self: SqliteBotReader, bot_id: str | None) -> Any:
            reads.append(threading.current_thread().name)
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as raw, raw:
                raw.execute("UPDATE bots SET deleted_at = NULL WHERE id = ?", (bot.hex,))
            return real_get(self, bot_id)

        monkeypatch.setattr(SqliteBotReader, "get", restore_then_read)
    else:
        real_records = bot_lookup.bot_records

        async def restore_then_query(sessions: Any, ids: Any) -> Any:
            reads.append("loop")
            if len(reads) == 2:  # the first is the selection's, the second the removal's
                await store.restore(bot)
            return await real_records(sessions, ids)

        # The selection's read and the removal's look-up, wherever each module took it from.
        monkeypatch.setattr(container_selection, "bot_records", restore_then_query)
        monkeypatch.setattr(bot_lookup, "bot_records", restore_then_query)
    service = make_service(settings, store, Clock(finished + timedelta(minutes=5)))
    report = await service.run(trigger="cli", actor="cli:test", dry_run=False, only="containers")
    result = report["resources"]["containers"]
    assert (result["found"], result["deleted"]) == (1, 0), report
    assert result["skipped"] == [{"id": stopped, "reason": f"bot {bot} is live", "engine": "local"}]
    assert containers.state(stopped) == "exited"
    if settings.is_sqlite:  # read once, in an engine thread, not on the event loop
        assert len(reads) == 1 and reads[0] != threading.main_thread().name
    else:
        assert len(reads) == 2
