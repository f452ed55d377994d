"""The ``results_over_quota`` stage: deletes what :mod:`~botfleet.cleanup.quota_selection`
selects, batch by batch, walking bots in id order.

A batch ranks the results of the bots from where the last batch ended (that bot included: it
may have more to lose), deletes the first victims in bot order, and audits them in one record
per reason (a quota, the budget) listing their ids. Ranking and deletion are one statement, so
each batch re-states the condition: a bot restored, deleted or put on hold since the plan, or a
result no longer among its bot's victims, stays.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, Uuid, bindparam, insert

from botfleet.cleanup.archived_results import (
    EVERY_COLUMN,
    RESULT_COLUMNS,
    archive_binds,
    audit_names_file,
    audit_snapshot,
    lines_column,
    rendered_body,
    rows_body,
)
from botfleet.cleanup.batches import Batch, BatchLoop, Tally
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.quota_selection import OVER_QUOTA, BudgetBoundary, ranked, victim_condition
from botfleet.cleanup.rules import BUDGET_ROWS
from botfleet.cleanup.sql import Runner, bound_text, scalar
from botfleet.constants import KIND_RESULTS_OVER_QUOTA
from botfleet.store.models import CleanupAudit
from botfleet.store.session import SessionFactory

WHY_QUOTA = f"{KIND_RESULTS_OVER_QUOTA}: beyond its rule's max_results_per_bot"
WHY_BUDGET = (
    f"{KIND_RESULTS_OVER_QUOTA}: over CLEANUP_RESULTS_BUDGET, oldest of the lowest priority"
)

# An archived batch may hold results of both reasons; each result's own is in its audit record.
WHY_EITHER = f"{KIND_RESULTS_OVER_QUOTA}: a rule's max_results_per_bot or CLEANUP_RESULTS_BUDGET"


@dataclass(frozen=True)
class QuotaPurge:
    loop: BatchLoop

    async def purge(
        self, tally: Tally, limit: int, max_id: int, boundary: BudgetBoundary | None
    ) -> None:
        stage = self.loop.stage
        dialect, policy, now = stage.run.dialect, stage.policy, stage.now

        async def step(runner: Runner, size: int, cursor: Any, archive: str | None) -> Batch:
            return await self._batch(
                runner, dialect, policy, now, size, cursor, max_id, boundary, archive
            )

        if not dialect.postgres:
            await self.loop.run(KIND_RESULTS_OVER_QUOTA, tally, limit, step)
            return
        # One statement per batch on a connection of the stage's own, in autocommit: one round
        # trip a batch instead of a pooled session's five (cleanup/sql.dedicated_connection).
        async with self.loop.dedicated() as conn:
            await self.loop.run(
                KIND_RESULTS_OVER_QUOTA, tally, limit, step, connection=conn, autocommit=True
            )

    async def _batch(
        self,
        runner: Runner,
        dialect: Dialect,
        policy: Policy,
        now: datetime,
        size: int,
        cursor: Any,
        max_id: int,
        boundary: BudgetBoundary | None,
        archive: str | None,
    ) -> Batch:
        """With an ``archive`` file name (``CLEANUP_ARCHIVE_DIR``), the deleted rows come back
        as the batch's archive lines and its audit records name the file (safety rule 8)."""
        cond = victim_condition(boundary)
        binds: list[Any] = [
            *cond.binds,
            bindparam("max_id", max_id, BigInteger()),
            bindparam("batch", size),
            bindparam("rq", WHY_QUOTA, String()),
            bindparam("rb", WHY_BUDGET, String()),
        ]
        why = f"CASE WHEN {OVER_QUOTA} THEN :rq ELSE :rb END"
        if dialect.postgres:
            binds.append(bindparam("after", str(cursor or uuid.UUID(int=0)), String()))
            pg = ranked(dialect, policy, now, "CAST(:after AS uuid)")
            return await self._batch_pg(runner, pg.sql, cond.sql, why, [*binds, *pg.binds], archive)
        binds.append(bindparam("after", cursor or uuid.UUID(int=0), Uuid()))
        source = ranked(dialect, policy, now, ":after")
        victims = bound_text(
            f"SELECT s.id, s.bot_id, {why} AS why FROM ({source.sql}) s WHERE {cond.sql}"
            " ORDER BY s.bot_id LIMIT :batch",
            [*binds, *source.binds],
        ).columns(bot_id=Uuid())
        rows = (await runner.execute(victims)).all()
        if not rows:
            return Batch(0, 0)
        ids: Any = bindparam("ids", [int(r.id) for r in rows], expanding=True)
        returned = EVERY_COLUMN if archive else "id"
        stmt = bound_text(f"DELETE FROM results WHERE id IN :ids RETURNING {returned}", [ids])
        deleted = (await runner.execute(stmt.columns(*RESULT_COLUMNS) if archive else stmt)).all()
        gone = {int(r.id) for r in deleted}
        by_reason: dict[str, list[int]] = {}
        for row in rows:
            if int(row.id) in gone:
                by_reason.setdefault(str(row.why), []).append(int(row.id))
        if by_reason:
            await runner.execute(insert(CleanupAudit), self._records(by_reason, archive))
        body = rows_body(deleted, WHY_EITHER) if archive else None
        return Batch(len(rows), len(gone), cursor=max(r.bot_id for r in rows), archive=body)

    async def _batch_pg(
        self,
        runner: Runner,
        source: str,
        cond: str,
        why: str,
        binds: list[Any],
        archive: str | None,
    ) -> Batch:
        named, lines = audit_names_file(archive), lines_column(archive)
        gone_columns = "r.*" if archive else "r.id"
        sql = f"""
WITH victims AS (
    SELECT s.id, s.bot_id::text AS key, {why} AS why FROM ({source}) s WHERE {cond}
    ORDER BY s.bot_id LIMIT :batch
), gone AS (
    DELETE FROM results r WHERE r.id = ANY(ARRAY(SELECT id FROM victims))
    RETURNING {gone_columns}
), audit AS (
    INSERT INTO cleanup_audit (run_id, kind, resource_id, reason, actor, resource_count,
                               snapshot, deleted_at)
    SELECT :run_id, '{KIND_RESULTS_OVER_QUOTA}', min(g.id)::text || '..' || max(g.id)::text,
           v.why, :actor, count(*),
           json_build_object('count', count(*), {named}'ids', json_agg(g.id ORDER BY g.id)), :at
    FROM gone g JOIN victims v ON v.id = g.id GROUP BY v.why
    RETURNING 1
)
SELECT (SELECT count(*) FROM victims) AS selected, (SELECT count(*) FROM gone) AS rows,
       (SELECT max(key) FROM victims) AS last, (SELECT count(*) FROM audit) AS audited{lines}
"""
        stmt = bound_text(sql, [*binds, *self.loop.audit_binds(), *archive_binds(archive)])
        row = (await runner.execute(stmt)).one()
        body = rendered_body(row.lines, int(row.rows), WHY_EITHER) if archive else None
        return Batch(int(row.selected), int(row.rows), cursor=row.last, archive=body)

    def _records(
        self, by_reason: dict[str, list[int]], archive: str | None
    ) -> list[dict[str, Any]]:
        stage = self.loop.stage
        at = stage.run.clock()
        return [
            {
                "run_id": stage.run_id,
                "kind": KIND_RESULTS_OVER_QUOTA,
                "resource_id": f"{min(ids)}..{max(ids)}",
                "reason": reason,
                "actor": stage.actor,
                "resource_count": len(ids),
                "snapshot": audit_snapshot(sorted(ids), archive),
                "deleted_at": at,
            }
            for reason, ids in by_reason.items()
        ]


async def measure_after(runner: Runner, policy: Policy, before: dict[str, Any]) -> dict[str, Any]:
    """The budget's figures once the stage ran: rows counted again; bytes estimated from the
    average row before (a table does not shrink when rows go: :mod:`botfleet.cleanup.storage`).
    ``before``: the selection's figures (``rows_before``, ``bytes_before``)."""
    budget = policy.results_budget
    if budget is None:
        return {}
    rows = await scalar(runner, "SELECT count(*) FROM results")
    per_row = before["bytes_before"] / before["rows_before"] if before["rows_before"] else 0.0
    after = budget.measure(rows, round(rows * per_row))
    return {
        "rows_after": rows,
        "after": after,
        "over_after": max(0, after - budget.amount),
        "after_estimated": budget.unit != BUDGET_ROWS,
    }


async def measure_budget(sessions: SessionFactory, policy: Policy, extra: dict[str, Any]) -> None:
    """How far over the budget the store is after the stage (the report's after), added to the
    stage's ``extra["budget"]`` (absent: no budget was measured before, nothing to compare)."""
    budget = extra.get("budget")
    if budget is None or policy.results_budget is None:
        return
    async with sessions() as session:
        budget.update(await measure_after(session, policy, budget))
