"""Events are CloudEvents 1.0 in structured mode, and their signatures verify with the
``standardwebhooks`` library (not our own code); a tampered body or an old timestamp does not."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from botfleet.notify import events
from botfleet.notify.sender import backoff
from botfleet.notify.signing import headers, secret_key

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
REPORT = {
    "run_id": "7f0c1c9e-0000-4000-8000-000000000001",
    "status": "partial",
    "dry_run": False,
    "trigger": "schedule",
    "actor": "schedule",
    "started_at": "2026-12-06T03:59:00+00:00",
    "finished_at": "2026-12-06T04:00:00+00:00",
    "resources": {
        "bots": {"found": 3, "deleted": 2},
        "containers": {"found": 2, "deleted": 2, "bytes_reclaimed": 4096},
    },
    "errors": [{"stage": "containers", "message": "engine x down"}],
}


def test_a_run_finished_event_is_a_structured_cloud_event() -> None:
    event = events.run_finished(
        REPORT,
        source="http://h:3001/instances/i",
        link="http://h:3001/admin/cleanup/runs/x",
        time=NOW,
    )
    doc = json.loads(event.body)
    assert doc["specversion"] == "1.0" and doc["type"] == "io.botfleet.cleanup.run.finished"
    assert doc["source"] == "http://h:3001/instances/i" and doc["id"] == event.id
    assert doc["time"] == NOW.isoformat() and doc["datacontenttype"] == "application/json"
    assert doc["subject"] == REPORT["run_id"]
    data = doc["data"]
    assert data["status"] == "partial" and data["bytes_freed"] == 4096
    assert data["counts"]["bots"] == {"found": 3, "deleted": 2}
    assert data["report_url"].endswith("/admin/cleanup/runs/x")
    assert data["errors"] == ["engine x down"]
    assert event.dedupe == f"io.botfleet.cleanup.run.finished:{REPORT['run_id']}"


def test_types_are_under_io_botfleet_and_unknown_ones_are_refused() -> None:
    assert all(t.startswith("io.botfleet.") for t in events.TYPES)
    assert events.BOT_SOFT_DELETED in events.TYPES
    with pytest.raises(ValueError, match="unknown event type"):
        events.cloud_event("com.example.x", source="s", subject=None, data={}, time=NOW)


def test_purge_warnings_are_once_per_bot_and_deletion() -> None:
    bot = {"id": "b1", "name": "n", "labels": {}, "deleted_at": NOW}
    first = events.purge_due(bot, due_at=NOW, rule="default: 7d", source="s", link="l", time=NOW)
    again = events.purge_due(bot, due_at=NOW, rule="default: 7d", source="s", link="l", time=NOW)
    assert first.id != again.id and first.dedupe == again.dedupe


def test_signatures_verify_with_the_standardwebhooks_library() -> None:
    event = events.test_event(source="s", time=NOW, actor="t")
    stamp = int(time.time())
    body = event.body.encode()
    signed = headers(secret_key(SECRET), event.id, stamp, body)
    assert Webhook(SECRET).verify(body, signed)["id"] == event.id
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"a test", b"a fake"), signed)
    old = headers(secret_key(SECRET), event.id, stamp - 3600, body)
    with pytest.raises(WebhookVerificationError):  # a replay: too old
        Webhook(SECRET).verify(body, old)


@pytest.mark.parametrize(
    ("attempts", "low", "high"), [(1, 1.6, 2.0), (2, 3.2, 4.0), (5, 25.6, 32.0), (30, 240, 300)]
)
def test_backoff_doubles_up_to_its_cap_with_jitter(attempts: int, low: float, high: float) -> None:
    for _ in range(20):
        assert low <= backoff(attempts, base=2.0, cap=300.0) <= high


def test_a_soft_delete_event_is_once_per_bot_and_deletion() -> None:
    bot = {"id": "b1", "name": "n", "labels": {"team": "x"}}
    terms = {"rule": "rule 2: idle_after_days=10", "why": "idle", "reason": "idle: …"}
    first = events.bot_soft_deleted(bot, **terms, source="s", link="/bots/b1/restore", time=NOW)
    again = events.bot_soft_deleted(bot, **terms, source="s", link="/bots/b1/restore", time=NOW)
    later = events.bot_soft_deleted(
        bot, **terms, source="s", link="/bots/b1/restore", time=NOW + timedelta(days=1)
    )
    assert first.id != again.id and first.dedupe == again.dedupe != later.dedupe
    data = first.document["data"]
    assert (data["why"], data["rule"], data["deleted_at"]) == (
        "idle",
        terms["rule"],
        NOW.isoformat(),
    )
    assert first.document["subject"] == "b1" and data["restore"] == "POST /bots/b1/restore"
