"""The durable outbox: events written in the caller's transaction, one row per receiver.

Writing an event where the thing it reports is written (a run's report, a purge warning) means
it is sent if and only if that committed: nothing is lost to a crash between the two, and
nothing is sent for what rolled back. The sender (:mod:`botfleet.notify.sender`) delivers the
rows; the cleanup removes delivered and expired ones (:func:`purge_finished`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from botfleet.config import Settings
from botfleet.notify.events import Event, source_of
from botfleet.notify.signing import secret_key
from botfleet.store.models import NotifyOutbox

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
EXPIRED: Final = "expired"
# How long delivered and expired entries are kept (the purge warning's once-only key lives in
# them), beyond NOTIFY_BEFORE_PURGE_HOURS.
KEEP_FINISHED: Final = timedelta(days=7)

Runner = AsyncSession | AsyncConnection


@dataclass(frozen=True)
class Notifier:
    """What a writer of events needs: the receivers, the events' source, the server's URL
    (links in events), the purge warning's lead time, the signing key (for the sender)."""

    urls: tuple[str, ...]
    source: str
    server_url: str
    key: bytes
    postgres: bool
    before_purge: timedelta | None = None

    def rows(self, events: Iterable[Event], now: datetime) -> list[dict[str, Any]]:
        return [
            {
                "event_id": event.id,
                "type": event.type,
                "url": url,
                "dedupe_key": event.dedupe,
                "body": event.body,
                "state": PENDING,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for event in events
            for url in self.urls
        ]

    async def enqueue(self, runner: Runner, events: Sequence[Event], now: datetime) -> None:
        """In ``runner``'s transaction; an event already queued for a receiver (its dedupe
        key) is not queued again."""
        rows = self.rows(events, now)
        if not rows:
            return
        insert = pg_insert if self.postgres else sqlite_insert
        stmt = insert(NotifyOutbox).on_conflict_do_nothing(index_elements=["dedupe_key", "url"])
        await runner.execute(stmt, rows)

    def link(self, path: str) -> str:
        return f"{self.server_url.rstrip('/')}{path}"


def notifier_for(settings: Settings) -> Notifier | None:
    """NOTIFY_WEBHOOK_URLS and its secret, or None when no receiver is configured."""
    urls = settings.notify_url_list
    if not urls or settings.notify_webhook_secret is None:
        return None
    hours = settings.notify_before_purge_hours
    return Notifier(
        urls=tuple(urls),
        source=source_of(settings.main_server_url, settings.botfleet_instance),
        server_url=settings.main_server_url,
        key=secret_key(settings.notify_webhook_secret.get_secret_value()),
        postgres=not settings.is_sqlite,
        before_purge=timedelta(hours=hours) if hours else None,
    )


async def queued_keys(runner: Runner, keys: Sequence[str]) -> set[str]:
    """Which of these dedupe keys are in the outbox already (for any receiver)."""
    found: set[str] = set()
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        rows = await runner.execute(
            select(NotifyOutbox.dedupe_key).where(NotifyOutbox.dedupe_key.in_(chunk)).distinct()
        )
        found.update(key for (key,) in rows)
    return found


async def purge_finished(runner: Runner, now: datetime, keep: timedelta = KEEP_FINISHED) -> int:
    """Delivered and expired entries older than ``keep``: the cleanup's own upkeep."""
    result = await runner.execute(
        delete(NotifyOutbox).where(
            NotifyOutbox.state.in_((DELIVERED, EXPIRED)),
            NotifyOutbox.finished_at < now - keep,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def depth(runner: Runner, now: datetime) -> tuple[int, float]:
    """(pending entries, age in seconds of the oldest), for the metrics."""
    row = (
        await runner.execute(
            select(func.count(), func.min(NotifyOutbox.created_at)).where(
                NotifyOutbox.state == PENDING
            )
        )
    ).one()
    oldest = row[1]
    age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    return int(row[0]), age
