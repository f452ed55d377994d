"""Scenario 7, foreign resources: containers that are not this instance's — unlabelled, look-alike
labels (``managed=false``, other spellings and cases of keys and values), another instance's, no
bot id — sit on the engine next to real orphans, each naming an expired, soft-deleted bot row so
that only the labels stand between it and removal. Every kind of run goes over them: dry runs, real
runs, a plan applied by id, a scheduled tick, the orphans view. The engine's own event stream is
the witness: no ``destroy``, ``die``, ``kill`` or ``stop`` for any of them, ever.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from botfleet.config import Settings
from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED
from tests.conftest import started_app
from tests.reliability._serve import AUTH
from tests.support.cleanup import days, make_service
from tests.support.containers import (
    DESTRUCTIVE,
    Containers,
    EventLog,
    container_state,
    labels_for,
)
from tests.support.figures import record_figure, scale
from tests.support.store import Store


def foreign_labels(instance: str, bot: str) -> dict[str, dict[str, str]]:
    """Label sets that look like ours and are not (each names an expired bot)."""
    ours = {LABEL_MANAGED: "true", LABEL_INSTANCE: instance, LABEL_BOT_ID: bot}
    return {
        "unlabelled": {},
        "managed=false": {**ours, LABEL_MANAGED: "false"},
        "managed=TRUE": {**ours, LABEL_MANAGED: "TRUE"},
        "managed=1": {**ours, LABEL_MANAGED: "1"},
        "managed='true '": {**ours, LABEL_MANAGED: "true "},
        "managed missing": {LABEL_INSTANCE: instance, LABEL_BOT_ID: bot},
        "another instance": {**ours, LABEL_INSTANCE: f"{instance}-other"},
        "instance upper case": {**ours, LABEL_INSTANCE: instance.upper()},
        "instance prefix": {**ours, LABEL_INSTANCE: instance[:-1]},
        "instance missing": {LABEL_MANAGED: "true", LABEL_BOT_ID: bot},
        "bot-id missing": {LABEL_MANAGED: "true", LABEL_INSTANCE: instance},
        "bot-id empty": {**ours, LABEL_BOT_ID: ""},
        "keys upper case": {k.upper(): v for k, v in ours.items()},
        "keys mixed case": {
            "Botfleet.Managed": "true",
            "botfleet.Instance": instance,
            "botfleet.Bot-Id": bot,
        },
        "keys look alike": {
            "botfleet_managed": "true",
            "botfleet-instance": instance,
            "botfleet.bot_id": bot,
        },
        "keys with spaces": {f" {k}": v for k, v in ours.items()},
    }


async def test_foreign_containers_are_never_touched(
    pg_factory: Callable[..., Settings],
    pg_store: Store,
    containers: Containers,
    instance: str,
    docker_client: Any,
) -> None:
    settings = pg_factory(bot_retention_days=0, container_cleanup_grace_minutes=0)
    now = datetime.now(UTC)
    foreign: dict[str, str] = {}
    for name in foreign_labels(instance, ""):
        bot = str(await pg_store.bot(deleted_at=now - days(30)))
        foreign[name] = containers.make("created", foreign_labels(instance, bot)[name])
    bot = await pg_store.bot(deleted_at=now - days(30))
    foreign["named like ours, unlabelled"] = containers.named(f"botfleet-{bot}")
    foreign["exited, another instance"] = containers.make(
        "exited", labels_for(f"{instance}-other", bot)
    )
    foreign["running, unlabelled"] = containers.make("running", {})
    # Real orphans of this instance, for contrast: these must go.
    ours = [
        containers.make(
            "created", labels_for(instance, await pg_store.bot(deleted_at=now - days(30)))
        )
        for _ in range(2)
    ] + [containers.make("created", labels_for(instance, uuid.uuid4()))]
    states = {cid: container_state(docker_client, cid) for cid in foreign.values()}
    events = EventLog(containers.image).start()  # the scene is set: from here on, the runs'

    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
    runs = 0
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH
        ) as http:
            for _ in range(scale(1, 5)):
                assert (await http.get("/admin/cleanup/orphans")).status_code == 200
                dry = (await http.post("/admin/cleanup?dry_run=true")).json()
                real = await http.post(f"/admin/cleanup?dry_run=false&plan_id={dry['plan_id']}")
                assert real.status_code == 200, real.text
                again = await http.post("/admin/cleanup?dry_run=false")
                assert again.json()["status"] == "succeeded", again.text
                runs += 3
                skipped = {s["id"] for s in dry["resources"]["containers"].get("skipped", [])}
                assert skipped.isdisjoint(foreign.values())  # not even listed: never seen
        tick = await app.state.services.scheduler.tick()
        assert tick.kind == "ran", tick
        service = make_service(settings, pg_store)
        report = await service.run(trigger="cli", actor="cli:test", dry_run=False)
        assert report["status"] == "succeeded", report
        runs += 2
        await asyncio.to_thread(events.stop)
    finally:
        await ctx.__aexit__(None, None, None)
        events.close()

    seen = events.actions([*foreign.values(), *ours])
    touched = {cid for cid, action in seen if action in DESTRUCTIVE and cid in foreign.values()}
    names = {v: k for k, v in foreign.items()}
    assert not touched, [names[c] for c in touched]
    for name, cid in foreign.items():
        assert container_state(docker_client, cid) == states[cid], name
    destroyed = {cid for cid, action in seen if action == "destroy"}
    assert destroyed == set(ours)
    db = Store(settings, checker=True)
    try:
        assert sorted(await db.deleted_ids("containers")) == sorted(ours)
        assert not await db.double_deletions()
    finally:
        await db.close()
    record_figure(
        "foreign_resources",
        foreign_containers=len(foreign),
        runs=runs,
        foreign_touched=len(touched),
        orphans_removed=len(destroyed),
    )
