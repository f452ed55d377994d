"""Scenario 8, dry-run fidelity: on a frozen state (a fixed clock, nothing else writing) a dry run
changes nothing but its own run record — every other row and every container is bit-for-bit the
same — and its plan, applied by ``plan_id``, deletes exactly what it listed: no more, no less.

The state mixes everything a plan must tell apart: expired, retained, held and future-dated bots;
live bots with results; orphaned results; containers of expired and of live bots, running ones,
young ones inside the grace period, and a foreign one. The expected sets are computed here, from
how the scene was built, not from anything the app says.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from botfleet.config import Settings
from botfleet.constants import LABEL_HOLD
from tests.conftest import started_app
from tests.reliability._serve import AUTH
from tests.support.cleanup import Clock
from tests.support.containers import (
    Containers,
    container_digest,
    containers,
    containers_of,
    docker_time,
    labels_for,
)
from tests.support.figures import record_figure, scale
from tests.support.store import Store
from tests.support.wait import wait_until_async

__all__ = ["containers"]

GRACE = timedelta(seconds=1)


@dataclass
class Scene:
    """What was built, and what a correct plan therefore removes."""

    bots: set[str] = field(default_factory=set)  # expected to go
    bot_results: int = 0
    orphans: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    kept_containers: set[str] = field(default_factory=set)


async def build(
    store: Store, made: Containers, instance: str, rng: random.Random
) -> tuple[Scene, Any]:
    scene = Scene()
    n = lambda lo, hi: rng.randint(lo, hi)  # noqa: E731
    # Containers whose age counts from when they stopped: first the old ones...
    old_deleted = [await store.bot(deleted_at=None) for _ in range(n(1, 3))]
    for bot in old_deleted:
        scene.containers.add(made.make("exited", labels_for(instance, bot)))
    scene.containers.add(made.make("created", labels_for(instance, uuid.uuid4())))  # no row
    live_owner = await store.bot(results=n(0, 3))
    scene.kept_containers.add(made.make("exited", labels_for(instance, live_owner)))
    scene.kept_containers.add(made.make("created", {}))  # foreign
    # Running, with no bot row at all: only the running-state check keeps it (and no
    # reconciler stops it, as it would a deleted bot's).
    scene.kept_containers.add(made.make("running", labels_for(instance, uuid.uuid4())))
    # ... then, once the grace period has passed for those, a young one.
    last = max(stopped_at(made, c) for c in scene.containers | scene.kept_containers)
    await wait_until_async(
        lambda: time.time() >= last.timestamp() + 2 * GRACE.total_seconds(),
        timeout=10,
        message="the clock to pass the grace period of the stopped containers",
    )
    young_owner = await store.bot()
    young = made.make("exited", labels_for(instance, young_owner))
    scene.kept_containers.add(young)
    now = docker_time(made.inspect(young)["State"]["FinishedAt"]) + GRACE / 2
    # Rows, relative to that frozen now (retention 7 days).
    for bot in [*old_deleted, young_owner]:
        await store.soft_delete(bot, now - timedelta(days=30))
    for _ in range(n(2, 6)):
        k = n(0, 4)
        scene.bots.add(str(await store.bot(deleted_at=now - timedelta(days=n(8, 60)), results=k)))
        scene.bot_results += k
    for bot in [*old_deleted, young_owner]:
        scene.bots.add(str(bot))
    for _ in range(n(1, 3)):  # retained, held, and deleted "in the future" (clock skew)
        await store.bot(deleted_at=now - timedelta(days=n(0, 6)), results=1)
        await store.bot(deleted_at=now - timedelta(days=30), labels={LABEL_HOLD: "true"}, results=1)
        await store.bot(deleted_at=now + timedelta(hours=1), results=1)
    for _ in range(n(1, 3)):
        await store.bot(results=n(1, 3))  # live
    scene.orphans = {str(i) for i in await store.orphans(n(1, 5))}
    return scene, now


def stopped_at(made: Containers, container_id: str) -> Any:
    """When the container's age starts: when it stopped, or when it was made if never run."""
    raw = made.inspect(container_id)
    from botfleet.runtime.docker import parse_docker_time

    return parse_docker_time(raw["State"]["FinishedAt"]) or docker_time(raw["Created"])


async def test_a_dry_run_changes_nothing_and_its_plan_is_what_goes(
    settings_factory: Callable[..., Settings],
    containers: Containers,
    instance: str,
    docker_client: Any,
) -> None:
    settings = settings_factory(
        container_cleanup_grace_minutes=GRACE.total_seconds() / 60, bot_retention_days=7
    )
    planned_total = deleted_total = mismatches = 0
    for round_ in range(scale(1, 4)):
        store = Store(settings)
        db = Store(settings, checker=True)
        try:
            rng = random.Random(round_)
            scene, now = await build(store, containers, instance, rng)
            app, ctx = await started_app(settings)
            app.state.services.cleanup.clock = Clock(now)  # the frozen state's clock
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50003))
            try:
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://t", headers=AUTH
                ) as http:
                    kept = container_digest(docker_client, scene.kept_containers)
                    before = await frozen(db, docker_client, containers, instance)
                    dry = (await http.post("/admin/cleanup?dry_run=true")).json()
                    after = await frozen(db, docker_client, containers, instance)
                    assert after == before, "the dry run changed something"
                    runs = await db.runs()
                    assert [(r["dry_run"], r["status"]) for r in runs[-1:]] == [(True, "succeeded")]
                    planned = plan_of(dry)
                    assert planned == expected(scene), (planned, expected(scene))
                    real = await http.post(f"/admin/cleanup?dry_run=false&plan_id={dry['plan_id']}")
                    assert real.status_code == 200, real.text
                    report = real.json()
                    assert report["status"] == "succeeded", report
                    gone = await deleted_by(db, report["run_id"])
                    assert gone == planned, (gone, planned)
                    # What the plan left is untouched, and nothing else is due.
                    assert container_digest(docker_client, scene.kept_containers) == kept
                    again = (await http.post("/admin/cleanup?dry_run=true")).json()
                    assert all(r["found"] == 0 for r in again["resources"].values()), again
            finally:
                await ctx.__aexit__(None, None, None)
            planned_total += sum(len(v) if isinstance(v, set) else v for v in planned.values())
            deleted_total += sum(len(v) if isinstance(v, set) else v for v in gone.values())
            mismatches += int(gone != planned)
            # The next round starts from nothing: its scene must be all there is.
            await store.wipe()
            containers.remove_all()
            containers.ids.clear()
        finally:
            await db.close()
            await store.close()
    record_figure(
        "dry_run_fidelity",
        backend="sqlite" if settings.is_sqlite else "postgres",
        rounds=scale(1, 4),
        planned=planned_total,
        deleted=deleted_total,
        mismatches=mismatches,
        fidelity_percent=100.0 * deleted_total / planned_total if planned_total else 100.0,
    )


async def frozen(db: Store, client: Any, made: Containers, instance: str) -> dict[str, Any]:
    """Everything a dry run must leave alone: rows (but its own run record) and containers."""
    return {
        "counts": {t: n for t, n in (await db.counts()).items() if t != "cleanup_runs"},
        "bots": await db.digest("bots"),
        "results": await db.digest("results"),
        "audit": await db.digest("cleanup_audit"),
        "containers": container_digest(
            client, set(made.ids) | set(containers_of(client, instance))
        ),
    }


def expected(scene: Scene) -> dict[str, Any]:
    return {
        "bots": scene.bots,
        "bot_results": scene.bot_results,
        "orphaned_results": scene.orphans,
        "containers": scene.containers,
    }


def plan_of(report: dict[str, Any]) -> dict[str, Any]:
    """What a dry run says would go: ids (its samples hold them all at this size) and counts."""
    res = report["resources"]
    for kind in ("bots", "orphaned_results", "containers"):
        assert res[kind]["found"] == len(res[kind]["sample"]), kind  # the sample is complete
    return {
        "bots": set(res["bots"]["sample"]),
        "bot_results": res["bot_results"]["found"],
        "orphaned_results": set(res["orphaned_results"]["sample"]),
        "containers": set(res["containers"]["sample"]),
    }


async def deleted_by(db: Store, run_id: str) -> dict[str, Any]:
    """What the audit trail says the run deleted."""
    audit = [a for a in await db.audit() if a["run_id"] == run_id]
    ids = lambda kind: [a["resource_id"] for a in audit if a["kind"] == kind]  # noqa: E731
    orphans = [
        str(i) for a in audit if a["kind"] == "orphaned_results" for i in a["snapshot"]["ids"]
    ]
    assert len(ids("bots")) == len(set(ids("bots"))) and len(orphans) == len(set(orphans))
    return {
        "bots": set(ids("bots")),
        "bot_results": sum(a["snapshot"]["results_deleted"] for a in audit if a["kind"] == "bots"),
        "orphaned_results": set(orphans),
        "containers": set(ids("containers")),
    }
