"""The events botfleet sends, pure: CloudEvents 1.0 in structured mode, types under
``io.botfleet.``, each built from what it reports.

https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md (structured mode: the whole
event is the JSON body, ``Content-Type: application/cloudevents+json``). ``id`` is also the
Standard Webhooks ``webhook-id``, so a receiver dedupes on either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/cloudevents+json"
RUN_FINISHED: Final = "io.botfleet.cleanup.run.finished"
BREAKER_OPENED: Final = "io.botfleet.breaker.opened"
BREAKER_CLOSED: Final = "io.botfleet.breaker.closed"
PURGE_DUE: Final = "io.botfleet.bot.purge_due"
# A retention rule soft-deleted an idle or failing live bot (policy file `action: soft_delete`):
# one event per bot, written in the transaction that soft-deletes it (cleanup/idle_bots.py).
BOT_SOFT_DELETED: Final = "io.botfleet.bot.soft_deleted"
TEST: Final = "io.botfleet.notify.test"
TYPES: Final = (RUN_FINISHED, BREAKER_OPENED, BREAKER_CLOSED, PURGE_DUE, BOT_SOFT_DELETED, TEST)


@dataclass(frozen=True)
class Event:
    """One event: its id (the dedupe key unless ``dedupe`` says otherwise) and its JSON body."""

    id: str
    type: str
    body: str
    dedupe: str

    @property
    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


def cloud_event(
    type_: str,
    *,
    source: str,
    subject: str | None,
    data: Mapping[str, Any],
    time: datetime,
    dedupe: str | None = None,
    event_id: str | None = None,
) -> Event:
    """A structured-mode CloudEvent; ``dedupe``: a key that makes it once-only (per receiver)."""
    if type_ not in TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    ident = event_id or f"evt_{uuid.uuid4().hex}"
    document: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "type": type_,
        "source": source,
        "id": ident,
        "time": time.isoformat(),
        "datacontenttype": "application/json",
    }
    if subject is not None:
        document["subject"] = subject
    document["data"] = dict(data)
    body = json.dumps(document, separators=(",", ":"), default=str, ensure_ascii=False)
    return Event(ident, type_, body, dedupe or ident)


def source_of(main_server_url: str, instance: str) -> str:
    """``source``: the server and its instance, a URI-reference as CloudEvents asks."""
    return f"{main_server_url.rstrip('/')}/instances/{instance}"


def run_finished(report: Mapping[str, Any], *, source: str, link: str, time: datetime) -> Event:
    """A run's end: status, counts per kind, bytes freed, errors, where its report is."""
    resources = report.get("resources") or {}
    data = {
        "run_id": report.get("run_id"),
        "status": report.get("status"),
        "dry_run": report.get("dry_run"),
        "trigger": report.get("trigger"),
        "actor": report.get("actor"),
        "started_at": report.get("started_at"),
        "finished_at": report.get("finished_at"),
        "counts": {
            kind: {"found": entry.get("found", 0), "deleted": entry.get("deleted", 0)}
            for kind, entry in resources.items()
        },
        "bytes_freed": sum(int(e.get("bytes_reclaimed") or 0) for e in resources.values()),
        "errors": [str(e.get("message", "")) for e in report.get("errors") or []][:10],
        "report_url": link,
    }
    if report.get("archive"):
        data["archive"] = {k: report["archive"].get(k) for k in ("dir", "bytes", "rows")}
    return cloud_event(
        RUN_FINISHED,
        source=source,
        subject=str(report.get("run_id")),
        data=data,
        time=time,
        dedupe=f"{RUN_FINISHED}:{report.get('run_id')}",
    )


def breaker_changed(
    dependency: str, state: str, *, last_error: str | None, source: str, time: datetime
) -> Event:
    """A dependency's breaker opened, or closed again (half-open is not an event)."""
    type_ = BREAKER_CLOSED if state == "closed" else BREAKER_OPENED
    return cloud_event(
        type_,
        source=source,
        subject=dependency,
        data={"dependency": dependency, "state": state, "last_error": last_error},
        time=time,
    )


def purge_due(
    bot: Mapping[str, Any], *, due_at: datetime, rule: str, source: str, link: str, time: datetime
) -> Event:
    """A warning, once per bot and deletion: it becomes due for purge at ``due_at``."""
    data = {
        "bot_id": str(bot["id"]),
        "name": bot["name"],
        "labels": bot.get("labels") or {},
        "deleted_at": bot["deleted_at"].isoformat(),
        "due_at": due_at.isoformat(),
        "rule": rule,
        "hold": "label the bot botfleet.hold=true (PATCH /bots/{id}) to keep it",
        "restore": f"POST {link} brings it back before it is due",
    }
    return cloud_event(
        PURGE_DUE,
        source=source,
        subject=str(bot["id"]),
        data=data,
        time=time,
        dedupe=f"{PURGE_DUE}:{bot['id']}:{bot['deleted_at'].isoformat()}",
    )


def bot_soft_deleted(
    bot: Mapping[str, Any],
    *,
    rule: str,
    why: str,
    reason: str,
    source: str,
    link: str,
    time: datetime,
) -> Event:
    """A rule soft-deleted a live bot (``why``: ``idle`` or ``failing``; ``reason``: the
    audit's words); it is purged by the ordinary retention, restorable until then. ``time``:
    its ``deleted_at`` — once per bot and deletion."""
    return cloud_event(
        BOT_SOFT_DELETED,
        source=source,
        subject=str(bot["id"]),
        data={
            "bot_id": str(bot["id"]),
            "name": bot["name"],
            "labels": bot.get("labels") or {},
            "rule": rule,
            "why": why,
            "reason": reason,
            "deleted_at": time.isoformat(),
            "restore": f"POST {link}",
        },
        time=time,
        dedupe=f"{BOT_SOFT_DELETED}:{bot['id']}:{time.isoformat()}",
    )


def test_event(*, source: str, time: datetime, actor: str) -> Event:
    return cloud_event(
        TEST,
        source=source,
        subject=None,
        data={"actor": actor, "message": "a test event"},
        time=time,
    )
