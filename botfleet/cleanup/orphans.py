"""What is orphaned right now, per kind, with what still protects the rest (reason and age):
the dashboard's and ``botfleet cleanup orphans``' view, built from a run's own selection code.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Uuid, bindparam

from botfleet.cleanup.container_selection import select_containers
from botfleet.cleanup.context import RunContext
from botfleet.cleanup.database_selection import (
    ORPHANED,
    bot_rows,
    max_result_id,
    select_bots,
    select_orphaned_results,
    select_results,
)
from botfleet.cleanup.eligibility import bot_purge_decision
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.sql import bound_text
from botfleet.constants import (
    KIND_BOTS,
    KIND_CONTAINERS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    WORKLOAD_KINDS,
)
from botfleet.errors import InvalidInput
from botfleet.store.models import UTCDateTime


async def orphans_view(ctx: RunContext, policy: Policy, *, limit: int = 100) -> dict[str, Any]:
    """What is orphaned right now per kind, with what still protects it (reason and age).

    Built from the run's own selection code, so it agrees with what a dry run would find.
    """
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "accepts 1 to 1000")
    now = ctx.clock()
    dialect = ctx.dialect
    items: list[dict[str, Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    errors: list[dict[str, Any]] = []
    async with ctx.sessions() as session:
        bots, _results = await select_bots(session, dialect, policy, now)
        deleted = "b.deleted_at IS NOT NULL"
        total_deleted = int(
            (
                await session.execute(bound_text(f"SELECT count(*) FROM bots b WHERE {deleted}"))
            ).scalar()
            or 0
        )
        for bot in await bot_rows(session, deleted + " ORDER BY b.deleted_at, b.id", [], limit):
            decision = bot_purge_decision(bot, policy, now)
            items.append(_item(KIND_BOTS, bot.id, decision.eligible, decision.reason, decision.age))
        summary[KIND_BOTS] = {
            "total": total_deleted,
            "eligible": bots.found,
            "protected": total_deleted - bots.found,
        }
        top = await max_result_id(session)
        orphaned = await select_orphaned_results(session, top)
        rows = await session.execute(
            bound_text(
                f"SELECT r.id, r.bot_id, r.created_at FROM results r WHERE {ORPHANED}"
                " ORDER BY r.id LIMIT :n",
                [_bind("max_id", top), _bind("n", limit)],
            ).columns(bot_id=Uuid(), created_at=UTCDateTime())
        )
        for r in rows:
            items.append(
                _item(
                    KIND_ORPHANED_RESULTS,
                    str(r.id),
                    True,
                    f"no bot row {r.bot_id}",
                    now - r.created_at,
                )
            )
        summary[KIND_ORPHANED_RESULTS] = {
            "total": orphaned.found,
            "eligible": orphaned.found,
            "protected": 0,
        }
        if policy.results_stage_enabled:
            expired = await select_results(session, dialect, policy, now, top)
            summary[KIND_RESULTS] = {"total": expired.found, "eligible": expired.found}
    # The engines' workloads: containers on plain engines, services on a swarm.
    kinds = [k for k in WORKLOAD_KINDS if ctx.fleet.of_kind(k)] or [KIND_CONTAINERS]
    for kind in kinds if ctx.limits.containers_enabled else []:
        sel = await select_containers(
            ctx.fleet,
            ctx.sessions,
            kind=kind,
            instance=ctx.limits.instance,
            policy=policy,
            now=now,
            concurrency=ctx.limits.container_concurrency,
        )
        errors.extend(sel.errors)
        judged = [(c, dec) for c, dec in sel.judged if dec.orphaned]
        for c, dec in judged[:limit]:
            items.append(
                _item(kind, c.id, dec.eligible, dec.reason, dec.age)
                | {"engine": c.engine, "state": c.state, "bot_id": c.bot_id}
            )
        eligible = sum(1 for _, dec in judged if dec.eligible)
        summary[kind] = {
            "total": len(judged),
            "eligible": eligible,
            "protected": len(judged) - eligible,
        }
    return {
        "items": items,
        "total": sum(int(v["total"]) for v in summary.values()),
        # Each kind lists its oldest `limit` items; counts are in `summary`.
        "next_cursor": None,
        "summary": summary,
        "now": now.isoformat(),
        "errors": errors,
    }


def _bind(name: str, value: Any) -> Any:
    return bindparam(name, value)


def _item(kind: str, item_id: str, eligible: bool, reason: str, age: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": item_id,
        "eligible": eligible,
        "reason": reason,
        "age_seconds": None if age is None else round(age.total_seconds(), 1),
    }
