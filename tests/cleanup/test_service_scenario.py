"""The Must-show scenario on a real store (SQLite and PostgreSQL) and the real Docker Engine.

A dry run finds exactly the expected set and changes nothing; the real run deletes exactly that
set; a second run finds nothing. The clock is frozen just after the young container was made, so
"older than the grace period" is decided by timestamps, not by how fast the machine is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from botfleet.config import Settings
from tests.support.cleanup import Clock, days, deleted, found, make_service
from tests.support.containers import Containers, containers, docker_time, labels_for
from tests.support.store import Store, store
from tests.support.wait import wait_until

__all__ = ["containers", "store"]  # fixtures

GRACE = timedelta(seconds=0.5)


async def test_dry_run_then_real_run_then_nothing(
    settings_factory: Any, store: Store, containers: Containers, instance: str
) -> None:
    # --- the world ------------------------------------------------------------------------
    orphan_owner = uuid.uuid4()
    stopped_orphan = containers.make("exited", labels_for(instance, orphan_owner))
    unlabelled = containers.make("exited")
    foreign = containers.make("exited", labels_for("someone-else"))
    finished = max(
        docker_time(containers.inspect(c)["State"]["FinishedAt"])
        for c in (stopped_orphan, unlabelled, foreign)
    )
    # Let the stopped containers age past the grace period, then make the young one.
    wait_until(
        lambda: datetime.now(UTC) - finished > 2 * GRACE,
        timeout=30,
        message="the stopped containers to age past the grace period",
    )
    young = containers.make("created", labels_for(instance))
    clock = Clock(docker_time(containers.inspect(young)["Created"]) + GRACE / 5)
    assert clock.now - finished > GRACE

    now = clock.now
    live = await store.bot(results=2)
    recent = await store.bot(deleted_at=now - days(1), results=3)
    expired = await store.bot(deleted_at=now - days(10), results=4)
    orphan_results = set(await store.orphans(3))
    live_stopped = containers.make("exited", labels_for(instance, live))
    running_of_deleted = containers.make("running", labels_for(instance, recent))

    settings: Settings = settings_factory(
        container_cleanup_grace_minutes=GRACE.total_seconds() / 60, cleanup_batch_size=2
    )
    service = make_service(settings, store, clock)
    counts_before = await store.counts()
    containers_before = containers.snapshot()

    # --- the dry run: exactly the expected set, nothing changed ---------------------------
    dry = await service.run(trigger="cli", actor="cli:test", dry_run=True)
    assert dry["status"] == "succeeded", dry["errors"]
    assert found(dry) == {"bots": 1, "bot_results": 4, "orphaned_results": 3, "containers": 1}
    assert deleted(dry) == {"bots": 0, "bot_results": 0, "orphaned_results": 0, "containers": 0}
    res = dry["resources"]
    assert res["bots"]["sample"] == [str(expired)]
    assert set(map(int, res["orphaned_results"]["sample"])) == orphan_results
    assert res["containers"]["sample"] == [stopped_orphan]
    skipped = {s["id"]: s["reason"] for s in res["containers"]["skipped"]}
    assert set(skipped) == {young, running_of_deleted}
    assert "younger than the grace period" in skipped[young]
    assert "running" in skipped[running_of_deleted]
    assert dry["plan_id"] == dry["run_id"]

    after_dry = await store.counts()
    assert after_dry == counts_before | {"cleanup_runs": counts_before["cleanup_runs"] + 1}
    assert containers.snapshot() == containers_before

    # --- the real run: exactly that set ---------------------------------------------------
    real = await service.run(trigger="cli", actor="cli:test", dry_run=False)
    assert real["status"] == "succeeded", real["errors"]
    expected = {"bots": 1, "bot_results": 4, "orphaned_results": 3, "containers": 1}
    assert found(real) == expected
    assert deleted(real) == expected
    assert await store.bot_ids() == {str(live), str(recent)}
    assert await store.results_of(live) == 2 and await store.results_of(recent) == 3
    assert await store.results_of(expired) == 0
    assert not (await store.result_ids()) & orphan_results
    after = containers.snapshot()
    assert after.pop(stopped_orphan) is None
    assert after == {k: v for k, v in containers_before.items() if k != stopped_orphan}
    assert after[unlabelled] == "exited" and after[live_stopped] == "exited"
    assert after[running_of_deleted] == "running" and after[young] == "created"

    audit = await store.audit(real["run_id"])
    by_kind: dict[str, list[Any]] = {}
    for record in audit:
        by_kind.setdefault(record["kind"], []).append(record)
    assert set(by_kind) == {"bots", "containers", "orphaned_results"}
    (bot_audit,) = by_kind["bots"]
    assert bot_audit["resource_id"] == str(expired) and bot_audit["actor"] == "cli:test"
    assert bot_audit["snapshot"] is not None and bot_audit["snapshot"]["results_deleted"] == 4
    assert bot_audit["snapshot"]["deleted_at"] and "token_hash" not in bot_audit["snapshot"]
    assert "expired" in bot_audit["reason"]
    assert [a["resource_id"] for a in by_kind["containers"]] == [stopped_orphan]
    # Results are audited a batch at a time (CLEANUP_BATCH_SIZE=2 here): every id is named.
    audited_results = {i for a in by_kind["orphaned_results"] for i in a["snapshot"]["ids"]}
    assert audited_results == orphan_results

    # --- a second run finds nothing ---------------------------------------------------------
    again = await service.run(trigger="cli", actor="cli:test", dry_run=False)
    assert again["status"] == "succeeded"
    assert found(again) == {"bots": 0, "bot_results": 0, "orphaned_results": 0, "containers": 0}
    assert {s["id"] for s in again["resources"]["containers"]["skipped"]} == {
        young,
        running_of_deleted,
    }
