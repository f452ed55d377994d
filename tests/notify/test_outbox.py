"""The outbox's own rules: one sender across replicas, breaker events, and the cleanup removing
delivered and expired entries once they are old enough (never pending ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from botfleet.archive.writer import Archive
from botfleet.cleanup.scheduler import Scheduler
from botfleet.config import Settings
from botfleet.notify import events
from botfleet.store.models import NotifyOutbox
from tests.conftest import postgres_only
from tests.notify.test_delivery import notifier_for, outbox, sender_for
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]
NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


@postgres_only
async def test_one_sender_delivers_across_replicas(settings: Settings, store: Store) -> None:
    notifier = notifier_for(settings, "http://127.0.0.1:9/never")
    first, _ = sender_for(settings, store, notifier)
    second, _ = sender_for(settings, store, notifier)
    async with httpx.AsyncClient() as http:
        await first.pass_once(http)
        await second.pass_once(http)
        assert first.holding and not second.holding
        await first.stop()  # the lock goes with it
        await second.pass_once(http)
        assert second.holding
    await second.stop()


async def test_breaker_events_are_queued_when_a_breaker_opens(
    settings_factory: Any, store: Store, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings: Settings = settings_factory(
        cleanup_archive_dir=str(tmp_path), cleanup_breaker_threshold=1
    )
    notifier = notifier_for(settings, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    service = make_service(
        settings, store, Clock(NOW), archive=Archive(blocker / "archive"), notifier=notifier
    )
    scheduler = Scheduler(settings=settings, service=service, engines=[], clock=Clock(NOW))
    await store.bot(deleted_at=NOW - timedelta(days=30))
    await scheduler.tick()
    rows = [r for r in await outbox(store) if r.type == events.BREAKER_OPENED]
    assert sorted(r.url for r in rows) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    document = events.Event(rows[0].event_id, rows[0].type, rows[0].body, "").document
    assert (
        document["subject"] == "archive"
        and "CLEANUP_ARCHIVE_DIR" in (document["data"]["last_error"])
    )
    assert {r.event_id for r in rows} == {rows[0].event_id}, "one event, one row per receiver"


async def test_the_cleanup_removes_old_delivered_and_expired_entries(
    settings: Settings, store: Store
) -> None:
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=1)
    rows = [
        ("delivered", old, "gone-1"),
        ("expired", old, "gone-2"),
        ("delivered", recent, "kept-1"),
        ("pending", old, "kept-2"),
    ]
    async with store.sessions() as session, session.begin():
        await session.execute(
            insert(NotifyOutbox),
            [
                {
                    "event_id": key,
                    "type": events.TEST,
                    "url": "http://127.0.0.1:9/",
                    "dedupe_key": key,
                    "body": "{}",
                    "state": state,
                    "attempts": 1,
                    "created_at": at,
                    "next_attempt_at": at,
                    "finished_at": None if state == "pending" else at,
                }
                for state, at, key in rows
            ],
        )
    service = make_service(settings, store, Clock(NOW))
    dry = await service.run(trigger="cli", actor="cli:t", dry_run=True)
    assert dry["status"] == "succeeded" and len(await outbox(store)) == 4, "a dry run: nothing"
    await service.run(trigger="cli", actor="cli:t", dry_run=False)
    async with store.sessions() as session:
        left = set(await session.scalars(select(NotifyOutbox.event_id)))
    assert left == {"kept-1", "kept-2"}
