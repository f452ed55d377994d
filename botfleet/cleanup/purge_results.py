"""The purge of results: orphaned ones (no bot row) and those of live bots past their result
retention, batch by batch, each batch audited as one record listing its ids (results are many
and carry nothing else worth reading).

Every batch's DELETE asks again what made its rows eligible: that no bot row exists, or that the
bot is live, not held and the result past its retention.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, bindparam, insert

from botfleet.cleanup.archived_results import (
    EVERY_COLUMN,
    RESULT_COLUMNS,
    archive_binds,
    audit_names_file,
    audit_snapshot,
    final_select,
    rendered_body,
    rows_body,
)
from botfleet.cleanup.batches import Batch, BatchLoop, Tally
from botfleet.cleanup.database_selection import ORPHANED, results_where
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.sql import Runner, bound_text
from botfleet.cleanup.storage import freed_sum, tuple_bytes
from botfleet.constants import KIND_ORPHANED_RESULTS, KIND_RESULTS
from botfleet.store.models import CleanupAudit, UTCDateTime

_FIRST_TS = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ResultPurge:
    """The results stages of one run."""

    loop: BatchLoop

    @property
    def dialect(self) -> Dialect:
        return self.loop.stage.run.dialect

    @property
    def policy(self) -> Policy:
        return self.loop.stage.policy

    @property
    def now(self) -> datetime:
        return self.loop.stage.now

    @property
    def run_id(self) -> uuid.UUID:
        return self.loop.stage.run_id

    @property
    def actor(self) -> str:
        return self.loop.stage.actor

    def clock(self) -> datetime:
        return self.loop.stage.run.clock()

    async def purge_orphaned_results(
        self, tally: Tally, limit: int, max_id: int, table: str | None = None
    ) -> None:
        """``table``: the plan's orphan ids (PostgreSQL, :func:`~botfleet.cleanup.
        database_selection.orphan_table`), walked by id on one autocommit connection; without
        it, batches walk ``results`` by id (SQLite)."""
        if table is not None:
            source = f'SELECT o.id, o.id AS key FROM "{table}" o WHERE o.id > :after'
        else:
            source = f"SELECT r.id, r.id AS key FROM results r WHERE {ORPHANED} AND r.id > :after"
        step = self._results_step(
            KIND_ORPHANED_RESULTS,
            source + " ORDER BY key LIMIT :batch",
            "NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id)",
            [bindparam("max_id", max_id)],
            "orphaned_results: no bot row",
            key=("id", Integer()),
        )
        if table is None:
            await self.loop.run(KIND_ORPHANED_RESULTS, tally, limit, step)
            return
        async with self.loop.dedicated() as conn:
            await self.loop.run(  # ids after the last batch's: batches never share rows
                KIND_ORPHANED_RESULTS,
                tally,
                limit,
                step,
                connection=conn,
                autocommit=True,
                overlap=True,
            )

    async def purge_results(self, tally: Tally, limit: int, max_id: int) -> None:
        """Walks ``ix_results_created_at`` from the oldest; the DELETE asks again that the bot
        be live, not held and the result past its retention."""
        frag = results_where(self.dialect, self.policy, self.now)
        step = self._results_step(
            KIND_RESULTS,
            f"SELECT r.id, r.created_at AS key FROM results r JOIN bots b ON b.id = r.bot_id"
            f" WHERE {frag.sql} AND r.created_at >= :after ORDER BY r.created_at LIMIT :batch",
            f"EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id AND {frag.sql})",
            [*frag.binds, bindparam("max_id", max_id)],
            "results: past result retention",
            key=("created_at", UTCDateTime()),
        )
        await self.loop.run(KIND_RESULTS, tally, limit, step)

    def _results_step(
        self,
        kind: str,
        victims: str,
        recheck: str,
        binds: Sequence[Any],
        reason: str,
        *,
        key: tuple[str, Any],
    ) -> Callable[[Runner, int, Any, str | None], Awaitable[Batch]]:
        column, key_type = key
        first = 0 if column == "id" else _FIRST_TS

        async def step(runner: Runner, size: int, cursor: Any, archive: str | None) -> Batch:
            params = [
                *binds,
                bindparam("after", first if cursor is None else cursor, type_=key_type),
                bindparam("batch", size),
            ]
            if self.dialect.postgres:
                return await self._results_pg(
                    runner, kind, victims, recheck, params, reason, archive
                )
            returned = EVERY_COLUMN if archive else f"id, {column}"
            sql = (
                f"DELETE FROM results AS r WHERE r.id IN (SELECT id FROM ({victims}))"
                f" AND {recheck} RETURNING {returned}"
            )
            stmt = bound_text(sql, params)
            stmt = stmt.columns(*RESULT_COLUMNS) if archive else stmt.columns(**{column: key_type})
            rows = (await runner.execute(stmt)).all()
            if not rows:
                return Batch(0, 0)
            ids = sorted(int(r.id) for r in rows)
            await self._audit_results(runner, kind, ids, reason, archive)
            body = rows_body(rows, reason) if archive else None
            last = max(getattr(r, column) for r in rows)
            return Batch(len(ids), len(ids), cursor=last, archive=body)

        return step

    async def _results_pg(
        self,
        runner: Runner,
        kind: str,
        victims: str,
        recheck: str,
        params: list[Any],
        reason: str,
        archive: str | None = None,
    ) -> Batch:
        """One statement; with an ``archive`` file name, the audit names it and the deleted
        rows come back as archive lines."""
        named = audit_names_file(archive)
        summary = f"""SELECT (SELECT count(*) FROM victims) AS selected,
       (SELECT count(*) FROM gone) AS rows, (SELECT max(key) FROM victims) AS last,
       (SELECT count(*) FROM audit) AS audited, {freed_sum("gone")} AS freed"""
        sql = f"""
WITH victims AS ({victims}),
gone AS (
    DELETE FROM results r WHERE r.id = ANY(ARRAY(SELECT id FROM victims)) AND {recheck}
    RETURNING {"r.*" if archive else "r.id"}, {tuple_bytes("r")}
), audit AS (
    INSERT INTO cleanup_audit (run_id, kind, resource_id, reason, actor, resource_count,
                               snapshot, deleted_at)
    SELECT :run_id, '{kind}', min(id)::text || '..' || max(id)::text, :reason, :actor, count(*),
           json_build_object('count', count(*), {named}'ids', json_agg(id ORDER BY id)), :at
    FROM gone HAVING count(*) > 0
    RETURNING 1
)
{final_select(summary, archive)}
"""
        stmt = bound_text(
            sql,
            [
                *params,
                *self.loop.audit_binds(),
                bindparam("reason", reason),
                *archive_binds(archive),
            ],
        )
        rows = (await runner.execute(stmt)).all()
        row = rows[0]
        last = row.last
        if isinstance(last, datetime) and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        body = rendered_body(rows, reason) if archive else None
        return Batch(
            int(row.selected), int(row.rows), cursor=last, archive=body, freed=int(row.freed)
        )

    async def _audit_results(
        self, runner: Runner, kind: str, ids: list[int], reason: str, archive: str | None
    ) -> None:
        """One audit row per batch of results: their ids, not a row each (results are many)."""
        await runner.execute(
            insert(CleanupAudit),
            [
                {
                    "run_id": self.run_id,
                    "kind": kind,
                    "resource_id": f"{ids[0]}..{ids[-1]}",
                    "reason": reason,
                    "actor": self.actor,
                    "resource_count": len(ids),
                    "snapshot": audit_snapshot(ids, archive),
                    "deleted_at": self.clock(),
                }
            ],
        )
