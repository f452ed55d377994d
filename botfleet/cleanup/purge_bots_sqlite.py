"""The bots stage's batches on SQLite: plain statements in one transaction per batch.

The bots are deleted with their condition re-stated, then exactly their results; the audit
records and the archive lines are made here as PostgreSQL's one statement makes them
(:mod:`botfleet.cleanup.purge_bots`), so a report or an archive reads the same on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, bindparam, insert

from botfleet.archive.format import AUDIT_KEY, TABLE_BOTS, TABLE_RESULTS, BatchBody, row_line
from botfleet.cleanup.audit import BATCH_KEY
from botfleet.cleanup.batches import Batch
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect, bot_predicate, bot_reason_for
from botfleet.cleanup.purged_bot_rows import (
    BOT_COLUMNS,
    GONE_COLUMNS,
    KEYSET,
    RESULT_COLUMNS,
    SNAPSHOT_COLUMNS,
    keyset_binds,
)
from botfleet.cleanup.sql import Runner, bound_text, jsonable
from botfleet.constants import KIND_BOTS
from botfleet.store.models import CleanupAudit, Result

_SQLITE = Dialect(postgres=False)


@dataclass(frozen=True)
class SqliteBotBatches:
    """A :data:`~botfleet.cleanup.batches.Step` of the bots stage on SQLite."""

    policy: Policy
    now: datetime
    run_id: uuid.UUID
    actor: str
    clock: Callable[[], datetime]

    async def __call__(self, session: Runner, size: int, cursor: Any, archive: str | None) -> Batch:
        """One batch: its bots (condition re-stated), their results, their audit records."""
        inner = bot_predicate(_SQLITE, self.policy, self.now)
        outer = bot_predicate(_SQLITE, self.policy, self.now, alias="bots")
        returned = BOT_COLUMNS if archive else GONE_COLUMNS
        columns = ", ".join(c.name for c in returned)
        sql = (
            f"DELETE FROM bots WHERE bots.id IN (SELECT b.id FROM bots b WHERE {inner.eligible}"
            f" AND {KEYSET} ORDER BY b.deleted_at LIMIT :batch)"
            f" AND {outer.eligible} RETURNING {columns}"
        )
        stmt = bound_text(sql, [*inner.binds, *outer.binds, *keyset_binds(cursor, size)])
        gone = (await session.execute(stmt.columns(*returned))).all()
        if not gone:
            return Batch(0, 0)
        ids = [row.id for row in gone]
        result_columns = RESULT_COLUMNS if archive else [Result.__table__.c.bot_id]
        deleted = (
            await session.execute(
                bound_text(
                    "DELETE FROM results WHERE bot_id IN :ids RETURNING "
                    + ", ".join(c.name for c in result_columns),
                    [bindparam("ids", ids, type_=Uuid(), expanding=True)],
                ).columns(*result_columns)
            )
        ).all()
        per_bot: dict[uuid.UUID, int] = {}
        for result in deleted:
            per_bot[result.bot_id] = per_bot.get(result.bot_id, 0) + 1
        await session.execute(
            bound_text(
                "DELETE FROM bot_events WHERE bot_id IN :ids",
                [bindparam("ids", ids, type_=Uuid(), expanding=True)],
            )
        )
        await session.execute(insert(CleanupAudit), self._audit(gone, per_bot, archive))
        last = max(row.deleted_at for row in gone)
        body = self._body(gone, deleted, per_bot) if archive else None
        return Batch(len(gone), len(gone), sum(per_bot.values()), last, archive=body)

    def _body(
        self, gone: Sequence[Any], results: Sequence[Any], per_bot: dict[uuid.UUID, int]
    ) -> BatchBody:
        """The archive lines PostgreSQL's statement returns, made here."""
        bots = [
            row_line(
                TABLE_BOTS,
                {k: jsonable(v) for k, v in row._mapping.items()},
                reason=bot_reason_for(self.policy, dict(row.labels or {})),
                results=per_bot.get(row.id, 0),
            )
            for row in gone
        ]
        lines = [
            row_line(TABLE_RESULTS, {k: jsonable(v) for k, v in row._mapping.items()})
            for row in results
        ]
        return BatchBody(
            ["\n".join(bots), "\n".join(lines)],
            {TABLE_BOTS: len(bots), TABLE_RESULTS: len(lines)},
        )

    def _audit(
        self, gone: Sequence[Any], per_bot: dict[uuid.UUID, int], archive: str | None = None
    ) -> list[dict[str, Any]]:
        """A batch's audit records, as the PostgreSQL statement writes them: one per engine
        and reason, its bots in id order, each with its snapshot."""
        groups: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
        for row in sorted(gone, key=lambda r: str(r.id)):
            snapshot = {k: jsonable(row._mapping[k]) for k in SNAPSHOT_COLUMNS}
            one = {"id": str(row.id), **snapshot, "results_deleted": per_bot.get(row.id, 0)}
            why = bot_reason_for(self.policy, dict(row.labels or {}), row.status_at_deletion)
            groups.setdefault((row.engine, why), []).append(one)
        at = self.clock()
        return [
            {
                "run_id": self.run_id,
                "kind": KIND_BOTS,
                "resource_id": f"{bots[0]['id']}..{bots[-1]['id']}",
                "engine": engine,
                "reason": why,
                "actor": self.actor,
                "resource_count": len(bots),
                "snapshot": {
                    "count": len(bots),
                    **({AUDIT_KEY: archive} if archive else {}),
                    BATCH_KEY: bots,
                },
                "deleted_at": at,
            }
            for (engine, why), bots in groups.items()
        ]
