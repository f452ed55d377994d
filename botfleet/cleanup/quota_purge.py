"""The ``results_over_quota`` stage: deletes what :mod:`~botfleet.cleanup.quota_selection`
selects, batch by batch.

PostgreSQL works from every bot's cut (:mod:`~botfleet.cleanup.quota_walk`). SQLite walks bots
in id order: a batch ranks the results of the bots from where the last batch ended (that bot
included: it may have more to lose), deletes the first victims in bot order, and audits them in
one record per reason (a quota, the budget) listing their ids. Either way each batch re-states
the condition: a bot restored, deleted or put on hold since the plan stays.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, String, Uuid, bindparam, insert

from botfleet.cleanup.archived_results import (
    EVERY_COLUMN,
    RESULT_COLUMNS,
    audit_snapshot,
    rows_body,
)
from botfleet.cleanup.batches import Batch, BatchLoop, Tally
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.quota_selection import OVER_QUOTA, ranked, victim_condition
from botfleet.cleanup.quota_terms import BudgetBoundary, bot_terms
from botfleet.cleanup.quota_walk import WHY_BUDGET, WHY_EITHER, WHY_QUOTA, QuotaWalk
from botfleet.cleanup.rules import BUDGET_ROWS
from botfleet.cleanup.sql import Runner, bound_text, scalar
from botfleet.constants import KIND_RESULTS_OVER_QUOTA
from botfleet.store.models import CleanupAudit
from botfleet.store.session import SessionFactory


@dataclass(frozen=True)
class QuotaPurge:
    loop: BatchLoop

    async def purge(
        self, tally: Tally, limit: int, max_id: int, boundary: BudgetBoundary | None
    ) -> None:
        stage = self.loop.stage
        dialect, policy, now = stage.run.dialect, stage.policy, stage.now
        if dialect.postgres:
            terms = bot_terms(dialect, policy, now)
            await QuotaWalk(self.loop, max_id).purge(tally, limit, terms, boundary)
            return

        async def step(runner: Runner, size: int, cursor: Any, archive: str | None) -> Batch:
            return await self._batch(runner, size, cursor, max_id, boundary, archive)

        await self.loop.run(KIND_RESULTS_OVER_QUOTA, tally, limit, step)

    async def _batch(
        self,
        runner: Runner,
        size: int,
        cursor: Any,
        max_id: int,
        boundary: BudgetBoundary | None,
        archive: str | None,
    ) -> Batch:
        """SQLite. With an ``archive`` file name (``CLEANUP_ARCHIVE_DIR``), the deleted rows
        come back as the batch's archive lines and its audit records name the file (safety
        rule 8)."""
        stage = self.loop.stage
        cond = victim_condition(boundary)
        binds: list[Any] = [
            *cond.binds,
            bindparam("max_id", max_id, BigInteger()),
            bindparam("batch", size),
            bindparam("rq", WHY_QUOTA, String()),
            bindparam("rb", WHY_BUDGET, String()),
            bindparam("after", cursor or uuid.UUID(int=0), Uuid()),
        ]
        why = f"CASE WHEN {OVER_QUOTA} THEN :rq ELSE :rb END"
        source = ranked(stage.run.dialect, stage.policy, stage.now, ":after")
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
