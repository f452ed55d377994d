"""The ``results_over_quota`` deletions on PostgreSQL, from every bot's cut
(:mod:`~botfleet.cleanup.quota_cuts`).

Why the heap, not the bots: one bot's results are spread over the whole table, so deleting bot
by bot touches a page per result and comes back to each page once per bot on it (bench/quota).
When victims are dense, batches walk the heap in physical order instead
(:mod:`~botfleet.cleanup.postgres_heap_walk`; ``CLEANUP_DB_CONCURRENCY`` walks side by side):
a window of blocks per batch, each result in it not newer than every cut checked against its
bot's cut (a probe of the cuts' primary key per result: ``OFFSET 0`` keeps the planner from
hashing the whole table of cuts for each batch). What the walk cannot see (victims too sparse
to walk for, a row behind the walk's end) is deleted bot by bot through
``ix_results_bot_recent``. Either way one statement per batch deletes, re-stating that the bot
is live and not held, and writes the batch's audit: one record per reason (a quota, the
budget) listing the ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, String, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from botfleet.cleanup.archived_results import (
    archive_binds,
    audit_names_file,
    final_select,
    rendered_body,
)
from botfleet.cleanup.batches import Batch, BatchLoop, Step, Tally, together
from botfleet.cleanup.postgres_heap_walk import HeapWalk
from botfleet.cleanup.predicates import Dialect, Fragment
from botfleet.cleanup.quota_cuts import FOR_QUOTA, WITHIN_CUT, CutsTable, drop_leftovers
from botfleet.cleanup.quota_terms import BudgetBoundary
from botfleet.cleanup.sql import Runner, bound_text
from botfleet.cleanup.storage import freed_sum, tuple_bytes
from botfleet.constants import KIND_RESULTS_OVER_QUOTA
from botfleet.store.models import UTCDateTime

WHY_QUOTA = f"{KIND_RESULTS_OVER_QUOTA}: beyond its rule's max_results_per_bot"
WHY_BUDGET = (
    f"{KIND_RESULTS_OVER_QUOTA}: over CLEANUP_RESULTS_BUDGET, oldest of the lowest priority"
)
# An archived batch may hold results of both reasons; each result's own is in its audit record.
WHY_EITHER = f"{KIND_RESULTS_OVER_QUOTA}: a rule's max_results_per_bot or CLEANUP_RESULTS_BUDGET"
_WHY = f"CASE WHEN {FOR_QUOTA} THEN :rq ELSE :rb END"
# The widest window a batch scans: about 10,000 results, when it finds none to delete.
WINDOW_BLOCKS = 128
# A batch deletes this many times CLEANUP_BATCH_SIZE results. A result is a light row: a batch of
# CLEANUP_BATCH_SIZE of them was a fifth of the work of a batch of as many bots (each deleted with
# its results and audited), and as long again went in its round trips and the client's share, so
# the walks waited on the client as much as on the database (BENCHMARKS.md, Result quotas).
QUOTA_BATCH_FACTOR = 3


@dataclass(frozen=True)
class QuotaWalk:
    """The stage's deletions on PostgreSQL, for one run."""

    loop: BatchLoop
    max_id: int

    @property
    def live(self) -> str:
        """The bot (``b``) still live and not held: re-stated by every batch."""
        return f"b.deleted_at IS NULL AND NOT ({Dialect(postgres=True).held('b')})"

    async def purge(
        self, tally: Tally, limit: int, terms: Fragment, boundary: BudgetBoundary | None
    ) -> None:
        stage = self.loop.stage
        if limit <= 0:  # the plan found none: no cut to look for
            return
        table = CutsTable(stage.run_id)
        async with self.loop.dedicated() as conn:
            await drop_leftovers(conn)
            await _commit(conn)
            try:
                await table.fill(conn, terms, boundary, self.max_id)
                await _commit(conn)
                await self._walk(conn, table, tally, limit)
                # Bot by bot: all of it when victims are sparse, else what the walk missed.
                if tally.deleted < limit:
                    await self.loop.run(
                        KIND_RESULTS_OVER_QUOTA,
                        tally,
                        limit,
                        self._sweep_step(table),
                        connection=conn,
                        autocommit=stage.archive is None,
                        scale=QUOTA_BATCH_FACTOR,
                    )
            finally:
                await _commit(conn)
                await table.drop(conn)
                await _commit(conn)

    async def _walk(
        self, conn: AsyncConnection, table: CutsTable, tally: Tally, limit: int
    ) -> None:
        walk = await HeapWalk.start(conn, "results", limit, max_window=WINDOW_BLOCKS)
        await _commit(conn)
        if walk is None or table.newest is None:
            return
        autocommit = self.loop.stage.archive is None
        parts = walk.split(self.loop.stage.run.limits.db_concurrency)

        async def walk_part(part: HeapWalk, own: AsyncConnection) -> None:
            step = self._walk_step(table, part)
            await self.loop.run(
                KIND_RESULTS_OVER_QUOTA,
                tally,
                limit,
                step,
                connection=own,
                autocommit=autocommit,
                scale=QUOTA_BATCH_FACTOR,
            )

        async def walk_apart(part: HeapWalk) -> None:  # on a connection of its own
            async with self.loop.dedicated() as other:
                await walk_part(part, other)

        await together(tally, [walk_part(parts[0], conn), *(walk_apart(p) for p in parts[1:])])

    def _walk_step(self, table: CutsTable, walk: HeapWalk) -> Step:
        async def step(runner: Runner, size: int, _cursor: Any, archive: str | None) -> Batch:
            window = walk.window(size)
            # The window's victims by their cuts, in the order the scan reads the heap (no sort:
            # the scan stops at the batch's size, and ``last`` is the last victim read; a row
            # a scan in another order passed by is the sweep's). Whether their bots are still
            # live and not held is asked of those alone (a probe each), not of every bot (a
            # hash of the whole table per batch).
            scanned = f"""
    SELECT r.ctid AS tid, r.id, r.bot_id, {_WHY} AS why
    FROM results r
    CROSS JOIN LATERAL (SELECT * FROM "{table.name}" c WHERE c.bot_id = r.bot_id OFFSET 0) c
    WHERE r.ctid > CAST(CAST(:after_tid AS text) AS tid)
      AND r.ctid < CAST(CAST(:until_tid AS text) AS tid) AND r.created_at <= :newest
      AND {WITHIN_CUT}
    LIMIT :batch
), victims AS (
    SELECT s.tid, s.id, s.why FROM scanned s
    WHERE EXISTS (SELECT 1 FROM bots b WHERE b.id = s.bot_id AND {self.live} OFFSET 0)"""
            rows = await self._delete(
                runner,
                scanned,
                "r.ctid = ANY(ARRAY(SELECT tid FROM victims))",
                "(SELECT max(tid)::text FROM scanned)",
                [
                    bindparam("after_tid", window[0]),
                    bindparam("until_tid", window[1]),
                    bindparam("newest", table.newest, UTCDateTime()),
                ],
                size,
                archive,
                first="scanned",
            )
            row = rows[0]
            walk.advance(size, int(row.selected), row.last, window)
            return Batch(
                int(row.selected),
                int(row.rows),
                done=walk.done,
                archive=_body(rows, archive),
                freed=int(row.freed),
            )

        return step

    def _sweep_step(self, table: CutsTable) -> Step:
        async def step(runner: Runner, size: int, cursor: Any, archive: str | None) -> Batch:
            victims = f"""
    SELECT r.id, c.bot_id, {_WHY} AS why
    FROM "{table.name}" c JOIN bots b ON b.id = c.bot_id
    CROSS JOIN LATERAL (SELECT r.id, r.created_at FROM results r
        WHERE r.bot_id = c.bot_id AND {WITHIN_CUT} ORDER BY r.created_at, r.id LIMIT :batch) r
    WHERE c.bot_id >= CAST(:after AS uuid) AND {self.live}
    ORDER BY c.bot_id LIMIT :batch"""
            rows = await self._delete(
                runner,
                victims,
                "r.id = ANY(ARRAY(SELECT id FROM victims))",
                "(SELECT max(bot_id::text) FROM victims)",
                [bindparam("after", str(cursor or uuid.UUID(int=0)), String())],
                size,
                archive,
            )
            row = rows[0]
            # A bot only partly done is where the next batch starts (``>=``).
            return Batch(
                int(row.selected),
                int(row.rows),
                cursor=row.last,
                archive=_body(rows, archive),
                freed=int(row.freed),
            )

        return step

    async def _delete(
        self,
        runner: Runner,
        victims: str,
        which: str,
        last: str,
        binds: list[Any],
        size: int,
        archive: str | None,
        first: str = "victims",
    ) -> Any:
        """One statement: the victims deleted, and audited by reason. With an ``archive`` file
        name (CLEANUP_ARCHIVE_DIR) the deleted rows come back as the batch's archive lines and
        the audit records name the file (safety rule 8). ``first``: the name ``victims``'s
        first CTE (what the batch read: ``selected`` counts it), if it goes on to others."""
        named = audit_names_file(archive)
        gone_columns = "r.*" if archive else "r.id"
        summary = f"""SELECT (SELECT count(*) FROM {first}) AS selected,
       (SELECT count(*) FROM gone) AS rows, {last} AS last,
       (SELECT count(*) FROM audit) AS audited, {freed_sum("gone")} AS freed"""
        sql = f"""
WITH {first} AS ({victims}
), gone AS (
    DELETE FROM results r WHERE {which}
    RETURNING {gone_columns}, {tuple_bytes("r")}
), audit AS (
    INSERT INTO cleanup_audit (run_id, kind, resource_id, reason, actor, resource_count,
                               snapshot, deleted_at)
    SELECT :run_id, '{KIND_RESULTS_OVER_QUOTA}', min(g.id)::text || '..' || max(g.id)::text,
           v.why, :actor, count(*),
           json_build_object('count', count(*), {named}'ids', json_agg(g.id ORDER BY g.id)), :at
    FROM gone g JOIN victims v ON v.id = g.id GROUP BY v.why
    RETURNING 1
)
{final_select(summary, archive)}
"""
        stmt = bound_text(
            sql,
            [
                *binds,
                bindparam("max_id", self.max_id, BigInteger()),
                bindparam("batch", size),
                bindparam("rq", WHY_QUOTA, String()),
                bindparam("rb", WHY_BUDGET, String()),
                *self.loop.audit_binds(),
                *archive_binds(archive),
            ],
        )
        return (await runner.execute(stmt)).all()


def _body(rows: Sequence[Any], archive: str | None) -> Any:
    return rendered_body(rows, WHY_EITHER) if archive else None


async def _commit(conn: AsyncConnection) -> None:
    """End what the stage's own connection has open (a no-op in autocommit)."""
    if conn.in_transaction():
        await conn.commit()
