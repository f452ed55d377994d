"""Notifications under faults, against a real receiver on 127.0.0.1: down for a whole run,
answering 500, answering after 5 s, then back. Runs take no longer than without notifications
(they only write the outbox); once the receiver is back every event arrives, each signature
verifies (with the ``standardwebhooks`` library), and nothing a receiver answered 2xx to is
delivered to it twice."""

from __future__ import annotations

import base64
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from standardwebhooks import Webhook

from botfleet.cleanup.lock import lock_for
from botfleet.config import Settings
from botfleet.constants import NOTIFY_LOCK_KEY
from botfleet.metrics.notify import NotifyMetrics
from botfleet.notify import events
from botfleet.notify.outbox import Notifier
from botfleet.notify.sender import Sender
from botfleet.notify.signing import secret_key
from botfleet.store.models import NotifyOutbox
from tests.support.cleanup import days, deleted, make_service
from tests.support.receiver import Receiver
from tests.support.store import Store, store
from tests.support.wait import wait_until_async

__all__ = ["store"]
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def notifier_for(settings: Settings, *urls: str, before_purge: float | None = None) -> Notifier:
    return Notifier(
        urls=urls,
        source=events.source_of("http://127.0.0.1:3001", settings.botfleet_instance),
        server_url="http://127.0.0.1:3001",
        key=secret_key(SECRET),
        postgres=not settings.is_sqlite,
        before_purge=timedelta(hours=before_purge) if before_purge else None,
    )


def sender_for(settings: Settings, store: Store, notifier: Notifier) -> tuple[Sender, Any]:
    metrics = NotifyMetrics(CollectorRegistry())
    sender = Sender(
        sessions=store.sessions,
        notifier=notifier,
        lock=lock_for(settings, key=NOTIFY_LOCK_KEY, name="notify"),
        observer=metrics,
        clock=lambda: datetime.now(UTC),
        interval=0.1,
        base_delay=0.1,
        max_delay=0.5,
        timeout=15,
        lock_retry=0,
    )
    return sender, metrics


async def outbox(store: Store) -> list[Any]:
    async with store.sessions() as session:
        return list((await session.execute(select(NotifyOutbox))).scalars())


def verified(receiver: Receiver) -> list[dict[str, Any]]:
    """Every event the receiver answered 2xx to, each verified by the library."""
    hook = Webhook(SECRET)
    out = []
    for request in receiver.delivered():
        assert request.headers["content-type"] == events.CONTENT_TYPE
        document = hook.verify(request.body, request.headers)
        assert document["id"] == request.headers["webhook-id"]
        out.append(document)
    return out


async def timed_run(service: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    return report, time.perf_counter() - started


@pytest.mark.slow
async def test_a_receiver_down_failing_slow_then_back_gets_every_event_once(
    settings: Settings, store: Store
) -> None:
    receiver = Receiver(delay=5.0)  # not started: down
    notifier = notifier_for(settings, receiver.url, before_purge=48)
    now = datetime.now(UTC)
    plain = make_service(settings, store)
    noisy = make_service(settings, store, notifier=notifier)
    sender, metrics = sender_for(settings, store, notifier)
    # Two runs each way, alternating: the notifying ones only write the outbox.
    durations: dict[str, list[float]] = {"plain": [], "noisy": []}
    soon = await store.bot(deleted_at=now - days(6))  # due in a day: one warning
    for service, name in [(plain, "plain"), (noisy, "noisy")] * 2:
        for _ in range(20):
            await store.bot(deleted_at=now - days(10), results=2)
        report, took = await timed_run(service)
        assert deleted(report)["bots"] == 20
        durations[name].append(took)
    await sender.start()
    try:
        # Down for the whole run and after: attempts fail, nothing is lost.
        await wait_until_async(
            lambda: metrics.deliveries.labels("failed")._value.get() >= 3,
            timeout=20,
            message="the sender to try the dead receiver",
        )
        # Answering 500.
        receiver.mode = "error"
        receiver.start()
        await wait_until_async(
            lambda: len(receiver.received) >= 2, timeout=20, message="500s to be answered"
        )
        assert not receiver.delivered()
        # Answering after 5 s: a run meanwhile is not slowed by it.
        receiver.mode = "slow"
        await wait_until_async(
            lambda: any(r.status == 200 for r in receiver.received) or receiver.mode_seen(),
            timeout=20,
            message="a slow request to start",
        )
        for _ in range(20):
            await store.bot(deleted_at=now - days(10))
        report, took = await timed_run(noisy)
        assert deleted(report)["bots"] == 20
        durations["noisy"].append(took)
        receiver.mode = "ok"

        async def settled() -> bool:  # delivered, and the sender's next pass measured it
            return await _all_delivered(store) and metrics.pending._value.get() == 0

        await wait_until_async(settled, timeout=60, message="every event delivered")
    finally:
        await sender.stop()
        receiver.stop()

    assert any(r.mode == "slow" and r.status == 200 for r in receiver.received)
    assert any(r.status == 500 for r in receiver.received)
    documents = verified(receiver)
    ids = Counter(d["id"] for d in documents)
    assert set(ids.values()) == {1}, "an event delivered twice to a receiver that said 2xx"
    rows = await outbox(store)
    assert {r.event_id for r in rows} == set(ids), "every queued event arrived"
    types = Counter(d["type"] for d in documents)
    assert types[events.RUN_FINISHED] == 3  # the notifying runs only
    assert types[events.PURGE_DUE] == 1, "one warning for the bot due soon, once"
    (warning,) = [d for d in documents if d["type"] == events.PURGE_DUE]
    assert warning["data"]["bot_id"] == str(soon) and warning["data"]["rule"] == "default: 7d"
    assert metrics.pending._value.get() == 0 and metrics.oldest._value.get() == 0
    assert metrics.deliveries.labels("delivered")._value.get() == len(documents)
    # Runs are not slowed: a notifying run takes about what a plain one does.
    assert max(durations["noisy"]) < 2 * max(durations["plain"]) + 1.0, durations


async def _all_delivered(store: Store) -> bool:
    rows = await outbox(store)
    return bool(rows) and all(r.state == "delivered" for r in rows)
