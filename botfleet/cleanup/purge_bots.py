"""The purge of expired bots, with exactly their results and their audit, batch by batch.

PostgreSQL: one data-modifying statement per batch, on a connection of the stage's own in
autocommit, deletes the bots (their condition re-stated), their results (by ``bot_id = ANY(…)``:
index lookups) and writes their audit (a record per engine and reason listing the bots:
:mod:`botfleet.cleanup.audit`) in one round trip. Dense expired bots are found by walking the
heap in physical order (:mod:`botfleet.cleanup.postgres_heap_walk`; ``CLEANUP_DB_CONCURRENCY``
walks side by side), the rest through the ``deleted_at`` index. SQLite gets plain statements in
one transaction per batch (:mod:`botfleet.cleanup.purge_bots_sqlite`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from botfleet.archive.format import AUDIT_KEY, TABLE_BOTS, TABLE_RESULTS, BatchBody
from botfleet.cleanup.archive_lines import blocks, json_text, line, with_lines
from botfleet.cleanup.audit import BATCH_KEY
from botfleet.cleanup.batches import Batch, BatchLoop, Step, Tally, together
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.postgres_heap_walk import HeapWalk
from botfleet.cleanup.predicates import (
    BotPredicate,
    Dialect,
    bot_predicate,
    bot_reason,
)
from botfleet.cleanup.purge_bots_sqlite import SqliteBotBatches
from botfleet.cleanup.purged_bot_rows import (
    BOT_COLUMNS,
    GONE_COLUMNS,
    KEYSET,
    RESULT_COLUMNS,
    SNAPSHOT_COLUMNS,
    keyset_binds,
)
from botfleet.cleanup.sql import Runner, bound_text
from botfleet.cleanup.storage import freed_sum, tuple_bytes
from botfleet.constants import KIND_BOTS
from botfleet.store.models import UTCDateTime

_SNAPSHOT_PAIRS = ", ".join(f"'{name}', g.{name}" for name in SNAPSHOT_COLUMNS)


@dataclass(frozen=True)
class BotPurge:
    """The bots stage of one run; :meth:`purge_bots` deletes up to ``limit`` bots."""

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
    def concurrency(self) -> int:
        return self.loop.stage.run.limits.db_concurrency

    @property
    def run_id(self) -> uuid.UUID:
        return self.loop.stage.run_id

    @property
    def actor(self) -> str:
        return self.loop.stage.actor

    def clock(self) -> datetime:
        return self.loop.stage.run.clock()

    async def purge_bots(self, tally: Tally, limit: int) -> None:
        if not self.dialect.postgres:
            sqlite = SqliteBotBatches(self.policy, self.now, self.run_id, self.actor, self.clock)
            await self.loop.run(KIND_BOTS, tally, limit, sqlite)
            return
        async with self.loop.dedicated() as conn:
            walk = await HeapWalk.start(conn, "bots", limit)
            if walk is not None:
                parts = walk.split(self.concurrency)

                async def walk_part(part: HeapWalk, own: AsyncConnection) -> None:
                    step = self._walk_step(part)
                    await self.loop.run(  # windows of blocks apart: batches never share rows
                        KIND_BOTS, tally, limit, step, connection=own, autocommit=True, overlap=True
                    )

                async def walk_apart(part: HeapWalk) -> None:  # on a connection of its own
                    async with self.loop.dedicated() as other:
                        await walk_part(part, other)

                await together(
                    tally, [walk_part(parts[0], conn), *(walk_apart(p) for p in parts[1:])]
                )
            # By deleted_at through the index: all of it when eligible bots are sparse, else
            # whatever the heap walk could not see (a row that moved behind it since).
            if tally.deleted < limit:
                await self.loop.run(
                    KIND_BOTS, tally, limit, self._bots_pg, connection=conn, autocommit=True
                )

    async def _bots_pg(self, session: Runner, size: int, cursor: Any, archive: str | None) -> Batch:
        """Victims by ``deleted_at`` (the partial index), deleted by id."""
        p = bot_predicate(self.dialect, self.policy, self.now)
        victims = f"""
    SELECT b.id, b.deleted_at FROM bots b
    WHERE {p.eligible} AND {KEYSET}
    ORDER BY b.deleted_at
    LIMIT :batch"""
        rows = await self._delete_bots(
            session,
            p,
            victims,
            "b.id = ANY(ARRAY(SELECT id FROM victims))",
            "(SELECT max(deleted_at) FROM victims)",
            keyset_binds(cursor, size),
            archive=archive,
        )
        row = rows[0]
        return Batch(
            int(row.selected),
            int(row.rows),
            int(row.related),
            row.last,
            archive=_body(rows),
            freed=int(row.freed),
        )

    def _walk_step(self, walk: HeapWalk) -> Step:
        async def step(session: Runner, size: int, _cursor: Any, archive: str | None) -> Batch:
            window = walk.window(size)
            rows = await self._bots_by_tid(session, size, window, archive)
            row = rows[0]
            walk.advance(size, int(row.selected), row.last, window)
            return Batch(
                int(row.selected),
                int(row.rows),
                int(row.related),
                done=walk.done,
                archive=_body(rows),
                freed=int(row.freed),
            )

        return step

    async def _bots_by_tid(
        self, session: Runner, size: int, window: tuple[str, str], archive: str | None
    ) -> Any:
        """Victims by physical position (a TID range scan of one window of heap blocks),
        deleted by TID: no index probe for the bots, and their pages visited once, in order."""
        p = bot_predicate(self.dialect, self.policy, self.now)
        victims = f"""
    SELECT b.ctid AS tid FROM bots b
    WHERE b.ctid > CAST(CAST(:after_tid AS text) AS tid)
      AND b.ctid < CAST(CAST(:until_tid AS text) AS tid) AND {p.eligible}
    ORDER BY b.ctid
    LIMIT :batch"""
        binds: list[Any] = [
            bindparam("after_tid", window[0]),
            bindparam("until_tid", window[1]),
            bindparam("batch", size),
        ]
        # A row updated since the victims were read has another TID now: the DELETE's recheck
        # fails and it stays (for the sweep by deleted_at, if it is still eligible).
        return await self._delete_bots(
            session,
            p,
            victims,
            "b.ctid = ANY(ARRAY(SELECT tid FROM victims))",
            "(SELECT max(tid)::text FROM victims)",
            binds,
            last_type=String(),
            archive=archive,
        )

    async def _delete_bots(
        self,
        session: Runner,
        p: BotPredicate,
        victims: str,
        which: str,
        last: str,
        binds: list[Any],
        *,
        last_type: Any = None,
        archive: str | None = None,
    ) -> Any:
        """One data-modifying statement: the bots (condition re-stated), exactly their results
        and their history's events (bot_history.py), and their audit: one record per engine and
        reason listing the bots, each with its snapshot (:mod:`botfleet.cleanup.audit`),
        aggregated as json text. With an ``archive``
        file name, the audit names it and the statement also returns every deleted row as
        archive lines (:mod:`botfleet.archive.format`)."""
        why = bot_reason(self.dialect, self.policy, alias="g")
        gone_columns = ", ".join(f"b.{c.name}" for c in (BOT_COLUMNS if archive else GONE_COLUMNS))
        res_columns = "r.*" if archive else "r.bot_id"
        named = f"'{AUDIT_KEY}', CAST(:archive AS text), " if archive else ""
        per_bot = "coalesce(p.n, 0)::text"
        bot_line = line(TABLE_BOTS, "g", BOT_COLUMNS, reason=json_text(why.sql), results=per_bot)
        lines = [
            (bot_line, "gone g LEFT JOIN per_bot p ON p.bot_id = g.id"),
            (line(TABLE_RESULTS, "x", RESULT_COLUMNS), "res x"),
        ]
        summary = f"""SELECT (SELECT count(*) FROM victims) AS selected,
       (SELECT count(*) FROM gone) AS rows,
       (SELECT count(*) FROM res) AS related,
       (SELECT sum(resource_count) FROM audit) AS audited,
       {freed_sum("gone", "res", "events")} AS freed,
       {last} AS last"""
        # No FOR UPDATE: the DELETE re-states the condition, and PostgreSQL re-checks it on a
        # row a concurrent restore changed (READ COMMITTED), so a restored bot is skipped.
        sql = f"""
WITH victims AS ({victims}
), gone AS (
    DELETE FROM bots b WHERE {which} AND {p.eligible}
    RETURNING {gone_columns}, {tuple_bytes("b")}
), res AS (
    DELETE FROM results r WHERE r.bot_id = ANY(ARRAY(SELECT id FROM gone))
    RETURNING {res_columns}, {tuple_bytes("r")}
), per_bot AS (
    SELECT bot_id, count(*) AS n FROM res GROUP BY bot_id
), events AS (
    DELETE FROM bot_events e WHERE e.bot_id = ANY(ARRAY(SELECT id FROM gone))
    RETURNING {tuple_bytes("e")}
), audit AS (
    INSERT INTO cleanup_audit (run_id, kind, resource_id, engine, reason, actor, resource_count,
                               snapshot, deleted_at)
    SELECT :run_id, '{KIND_BOTS}', min(w.id) || '..' || max(w.id), w.engine, w.why, :actor,
           count(*),
           json_build_object('count', count(*), {named}
                             '{BATCH_KEY}', json_agg(w.one ORDER BY w.id)), :at
    FROM (SELECT g.id::text COLLATE "C" AS id, g.engine, {why.sql} AS why,
                 json_build_object('id', g.id, {_SNAPSHOT_PAIRS},
                                   'results_deleted', coalesce(p.n, 0)) AS one
          FROM gone g LEFT JOIN per_bot p ON p.bot_id = g.id) w
    GROUP BY w.engine, w.why
    RETURNING resource_count
)
{with_lines(summary, lines) if archive else summary}
"""
        named_bind: list[Any] = [bindparam("archive", archive)] if archive else []
        stmt = bound_text(
            sql, [*p.binds, *why.binds, *binds, *self.loop.audit_binds(), *named_bind]
        )
        stmt = stmt.columns(last=last_type if last_type is not None else UTCDateTime())
        return (await session.execute(stmt)).all()


def _body(rows: Sequence[Any]) -> BatchBody | None:
    """The archive lines a PostgreSQL batch returned (None without an archive)."""
    row = rows[0]
    if "lines" not in row._mapping:
        return None
    return BatchBody(blocks(rows), {TABLE_BOTS: int(row.rows), TABLE_RESULTS: int(row.related)})
