"""The audit of removed workloads: a row per container or service, with its snapshot, written
in groups (one transaction each) as the removals go."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import insert

from botfleet.cleanup.batches import Tally
from botfleet.cleanup.container_scope import ContainerTarget
from botfleet.cleanup.context import StageContext
from botfleet.cleanup.sql import jsonable
from botfleet.constants import DEPENDENCY_DATABASE
from botfleet.runtime.base import ContainerInfo
from botfleet.store.models import CleanupAudit

log = logging.getLogger(__name__)


async def record_removed(
    stage: StageContext,
    kind: str,
    removed: list[tuple[ContainerTarget, ContainerInfo]],
    tally: Tally,
) -> None:
    if not removed:
        return
    tally.deleted += len(removed)
    at = stage.run.clock()
    for t, info in removed:
        tally.bytes_reclaimed += info.size_bytes or t.size_bytes or 0
        if t.age_seconds is not None:
            grace = stage.policy.container_grace.total_seconds()
            tally.lag_seconds.append(round(t.age_seconds - grace, 3))
    rows = [
        {
            "run_id": stage.run_id,
            "kind": kind,
            "resource_id": t.id,
            "engine": t.engine,
            "reason": f"{kind}: {t.reason}",
            "actor": stage.actor,
            "snapshot": container_snapshot(info, t.size_bytes),
            "deleted_at": at,
        }
        for t, info in removed
    ]
    try:
        async with stage.run.sessions() as session, session.begin():
            await session.execute(insert(CleanupAudit), rows)
    except Exception as exc:
        # The containers are gone either way; say loudly that their audit is missing.
        log.error("audit of %d removed %s failed: %s", len(rows), kind, exc)
        tally.errors.append(
            {
                "stage": kind,
                "dependency": DEPENDENCY_DATABASE,
                "message": f"audit write failed for {len(rows)} removed {kind}: "
                f"{type(exc).__name__}",
            }
        )


def container_snapshot(info: ContainerInfo, size_bytes: int | None = None) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "engine": info.engine,
        "state": info.state,
        "labels": dict(info.labels),
        "created_at": jsonable(info.created_at),
        "finished_at": jsonable(info.finished_at),
        "exit_code": info.exit_code,
        "size_bytes": info.size_bytes if info.size_bytes is not None else size_bytes,
        # A service's: its version when removed, and where its last task ran.
        **({"version": info.version, "node": info.node} if info.version is not None else {}),
    }
