"""Execution of the database stages: batched, verified, audited deletes.

Every batch is one short transaction (safety rule 3) that re-states the stage's condition in SQL,
so a row that changed since selection (a bot restored mid-run) is simply not deleted. Batches walk
a keyset (``deleted_at``, ``created_at`` or ``id``) or, for dense expired bots on PostgreSQL, the
``bots`` heap in physical order (:mod:`botfleet.cleanup.heapwalk`; ``CLEANUP_DB_CONCURRENCY``
walks side by side) — never an offset, so each starts where the last one ended. On PostgreSQL one
data-modifying statement per batch, on a connection of the stage's own in autocommit, deletes the
bots, their results (by ``bot_id = ANY(…)``: index lookups) and writes their audit (a record per
engine and reason listing the bots: :mod:`botfleet.cleanup.audit`) in one round trip; SQLite gets
plain statements in one transaction. Containers are removed by :mod:`botfleet.cleanup.containers`,
through the same checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Integer, String, Uuid, bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botfleet.cleanup.audit import BATCH_KEY
from botfleet.cleanup.heapwalk import HeapWalk
from botfleet.cleanup.plan import (
    ORPHANED,
    Runner,
    bound_text,
    results_where,
)
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import (
    BotPredicate,
    Dialect,
    bot_predicate,
    bot_reason,
    bot_reason_for,
)
from botfleet.config import Settings
from botfleet.constants import KIND_BOTS, KIND_ORPHANED_RESULTS, KIND_RESULTS
from botfleet.store.models import Bot, CleanupAudit, UTCDateTime
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

_FIRST_TS = datetime(1, 1, 1, tzinfo=UTC)
# A purged bot's audit snapshot: what identifies it and explains its purge (its labels select
# the retention rule; deleted_at starts the clock), not a backup of its row. Never its env or
# token hash: the API never shows those, and an audit record outlives the bot. Not its command,
# status (always "deleted" here), exit code or updated_at either: each field costs every purged
# bot time in the batch's transaction (BENCHMARKS.md, Purge). Its engine is a column of the
# batch's record; its id is listed beside the snapshot.
_SNAPSHOT_COLUMNS = ("name", "image", "labels", "container_id", "created_at", "deleted_at")
_SNAPSHOT_PAIRS = ", ".join(f"'{name}', g.{name}" for name in _SNAPSHOT_COLUMNS)
# What a batch reads back from the bots it deleted, on either backend: the record's columns and
# the snapshot's (labels also give the reason; deleted_at, SQLite's keyset).
_GONE_COLUMNS = [Bot.__table__.c[name] for name in ("id", "engine", *_SNAPSHOT_COLUMNS)]


class Interrupted(Exception):
    """A stop was requested (SIGTERM, a time limit): the run ends after the current batch."""


class Governor(Protocol):
    """Adaptive batch sizing (the scheduler's): asked before, told after, every batch."""

    def next_size(self) -> int: ...

    def observe(self, seconds: float, rows: int) -> None: ...


class FixedBatch:
    """The default governor: ``CLEANUP_BATCH_SIZE`` rows per transaction, always."""

    def __init__(self, size: int) -> None:
        self.size = size

    def next_size(self) -> int:
        return self.size

    def observe(self, seconds: float, rows: int) -> None:
        return None


@dataclass
class Tally:
    """What a stage really removed so far: updated only after a batch commits."""

    deleted: int = 0
    related: int = 0  # bot_results deleted with their bots
    failed: int = 0
    batches: int = 0
    bytes_reclaimed: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (id, reason, engine)
    unlisted_skips: int = 0  # skipped items known only by count
    errors: list[dict[str, Any]] = field(default_factory=list)
    lag_seconds: list[float] = field(default_factory=list)
    in_flight: int = 0  # rows reserved by batches not yet committed (concurrent walks)
    aborted: bool = False  # one concurrent walk failed: the others end after their batch
    _settled: asyncio.Event | None = field(default=None, repr=False, compare=False)

    async def settled(self) -> None:
        """Until a batch in flight ends (committed, or failed and its reservation handed back)."""
        if self._settled is None:
            self._settled = asyncio.Event()
        await self._settled.wait()

    def settle(self) -> None:
        if self._settled is not None:
            self._settled.set()
            self._settled = None


@dataclass(frozen=True)
class _Batch:
    selected: int
    rows: int
    related: int = 0
    cursor: Any = None
    # None: the walk ends when a batch selects fewer rows than asked (keyset walks); a heap walk
    # ends when its window passes the end of the table, however many rows the last one held.
    done: bool | None = None


Progress = Callable[[str, int, int], None]
Checkpoint = Callable[[], Awaitable[None]]


@dataclass
class Executor:
    sessions: SessionFactory
    dialect: Dialect
    policy: Policy
    now: datetime  # the plan's: every cutoff derives from it
    run_id: uuid.UUID
    actor: str
    checkpoint: Checkpoint
    governor: Governor
    lock_timeout_ms: int = 5000
    statement_timeout_ms: int = 60000
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    progress: Progress | None = None
    concurrency: int = 1  # PostgreSQL heap walks side by side (CLEANUP_DB_CONCURRENCY)

    # --- the batch loop ------------------------------------------------------------------------
    async def _loop(
        self,
        kind: str,
        tally: Tally,
        limit: int,
        step: Callable[[Runner, int, Any], Awaitable[_Batch]],
        *,
        connection: AsyncConnection | None = None,
        autocommit: bool = False,
    ) -> None:
        cursor: Any = None
        while True:
            if tally.deleted + tally.in_flight >= limit:
                if tally.in_flight == 0:
                    return
                # The rest is reserved by a concurrent walk's batch, which may find fewer rows
                # in its part than it reserved: wait for it, then take what it left.
                await tally.settled()
                continue
            await self.checkpoint()
            if tally.aborted:  # a concurrent walk of this stage failed: stop after our batch
                return
            room = limit - tally.deleted - tally.in_flight  # again: the checkpoint awaited
            if room <= 0:
                continue
            size = max(1, min(self.governor.next_size(), room))
            # Reserved until the batch commits: concurrent walks never delete more than planned.
            tally.in_flight += size
            started = time.perf_counter()
            try:
                batch = await self._batch(step, size, cursor, connection, autocommit)
            except BaseException:
                tally.in_flight -= size
                tally.settle()
                raise
            self.governor.observe(time.perf_counter() - started, batch.rows + batch.related)
            tally.in_flight -= size
            tally.deleted += batch.rows
            tally.related += batch.related
            tally.batches += 1
            tally.settle()
            if self.progress is not None:
                self.progress(kind, tally.deleted, limit)
            if batch.done if batch.done is not None else batch.selected < size:
                return
            cursor = batch.cursor
            # A busy database (timing.BatchGovernor): let live traffic through between batches.
            pause = float(getattr(self.governor, "pause_seconds", 0.0) or 0.0)
            if pause > 0:
                await asyncio.sleep(pause)

    async def _batch(
        self,
        step: Callable[[Runner, int, Any], Awaitable[_Batch]],
        size: int,
        cursor: Any,
        connection: AsyncConnection | None,
        autocommit: bool,
    ) -> _Batch:
        if connection is not None and autocommit:
            # One statement, one transaction, one round trip (limits set on the session).
            return await step(connection, size, cursor)
        if connection is not None:
            async with connection.begin():
                await self._session_limits(connection)
                return await step(connection, size, cursor)
        async with self.sessions() as session, session.begin():
            await self._session_limits(session)
            return await step(session, size, cursor)

    async def _session_limits(self, session: Runner) -> None:
        """Bounded waits, and no WAL flush per commit: a crash may undo the last few batches,
        each whole (its audit with it), never half of one; the next run redoes them.
        https://www.postgresql.org/docs/current/wal-async-commit.html"""
        if self.dialect.postgres:
            await _set_limits(session, self.lock_timeout_ms, self.statement_timeout_ms, True)

    def _common(self) -> list[Any]:
        return [
            bindparam("run_id", self.run_id, type_=Uuid()),
            bindparam("actor", self.actor),
            bindparam("at", self.clock(), type_=UTCDateTime()),
        ]

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL: one connection for a whole stage, in autocommit, its limits set once.

        Each batch is then a single statement — its own transaction — in one round trip,
        where a pooled session per batch cost five (checkout ping, BEGIN, limits, the batch,
        COMMIT)."""
        engine = self.sessions.kw.get("bind")
        assert isinstance(engine, AsyncEngine)
        conn = await engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await _set_limits(conn, self.lock_timeout_ms, self.statement_timeout_ms, True, False)
            yield conn
            for setting in _SESSION_LIMITS:
                await conn.execute(text(f"RESET {setting}"))
        except BaseException:
            await conn.invalidate()  # mid-statement or broken: never back to the pool as is
            raise
        finally:
            await conn.close()

    # --- bots and their results ----------------------------------------------------------------
    async def purge_bots(self, tally: Tally, limit: int) -> None:
        if not self.dialect.postgres:
            await self._loop(KIND_BOTS, tally, limit, self._bots_sqlite)
            return
        async with self.dedicated() as conn:
            walk = await HeapWalk.start(conn, "bots", limit)
            if walk is not None:
                parts = walk.split(self.concurrency)

                async def walk_part(part: HeapWalk, own: AsyncConnection) -> None:
                    step = self._walk_step(part)
                    await self._loop(KIND_BOTS, tally, limit, step, connection=own, autocommit=True)

                async def walk_apart(part: HeapWalk) -> None:  # on a connection of its own
                    async with self.dedicated() as other:
                        await walk_part(part, other)

                await together(
                    tally, [walk_part(parts[0], conn), *(walk_apart(p) for p in parts[1:])]
                )
            # By deleted_at through the index: all of it when eligible bots are sparse, else
            # whatever the heap walk could not see (a row that moved behind it since).
            if tally.deleted < limit:
                await self._loop(
                    KIND_BOTS, tally, limit, self._bots_pg, connection=conn, autocommit=True
                )

    def _keyset(self, cursor: Any, size: int) -> list[Any]:
        return [
            bindparam("after_ts", cursor or _FIRST_TS, type_=UTCDateTime()),
            bindparam("batch", size),
        ]

    # Every row a batch selects is deleted by it (or is no longer eligible), so the next batch
    # may start *at* the last deleted_at: ties are safe, and the index scan skips what is gone.
    _KEYSET = "b.deleted_at >= :after_ts"

    async def _bots_pg(self, session: Runner, size: int, cursor: Any) -> _Batch:
        """Victims by ``deleted_at`` (the partial index), deleted by id."""
        p = bot_predicate(self.dialect, self.policy, self.now)
        victims = f"""
    SELECT b.id, b.deleted_at FROM bots b
    WHERE {p.eligible} AND {self._KEYSET}
    ORDER BY b.deleted_at
    LIMIT :batch"""
        row = await self._delete_bots(
            session,
            p,
            victims,
            "b.id = ANY(ARRAY(SELECT id FROM victims))",
            "(SELECT max(deleted_at) FROM victims)",
            self._keyset(cursor, size),
        )
        return _Batch(int(row.selected), int(row.rows), int(row.related), row.last)

    def _walk_step(self, walk: HeapWalk) -> Callable[[Runner, int, Any], Awaitable[_Batch]]:
        async def step(session: Runner, size: int, _cursor: Any) -> _Batch:
            window = walk.window(size)
            row = await self._bots_by_tid(session, size, window)
            walk.advance(size, int(row.selected), row.last, window)
            return _Batch(int(row.selected), int(row.rows), int(row.related), done=walk.done)

        return step

    async def _bots_by_tid(self, session: Runner, size: int, window: tuple[str, str]) -> Any:
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
    ) -> Any:
        """One data-modifying statement: the bots (condition re-stated), exactly their results,
        and their audit: one record per engine and reason listing the bots, each with its
        snapshot (:mod:`botfleet.cleanup.audit`), aggregated as json text."""
        why = bot_reason(self.dialect, self.policy, alias="g")
        # No FOR UPDATE: the DELETE re-states the condition, and PostgreSQL re-checks it on a
        # row a concurrent restore changed (READ COMMITTED), so a restored bot is skipped.
        sql = f"""
WITH victims AS ({victims}
), gone AS (
    DELETE FROM bots b WHERE {which} AND {p.eligible}
    RETURNING {", ".join(f"b.{c.name}" for c in _GONE_COLUMNS)}
), res AS (
    DELETE FROM results r WHERE r.bot_id = ANY(ARRAY(SELECT id FROM gone))
    RETURNING r.bot_id
), per_bot AS (
    SELECT bot_id, count(*) AS n FROM res GROUP BY bot_id
), audit AS (
    INSERT INTO cleanup_audit (run_id, kind, resource_id, engine, reason, actor, resource_count,
                               snapshot, deleted_at)
    SELECT :run_id, '{KIND_BOTS}', min(w.id) || '..' || max(w.id), w.engine, w.why, :actor,
           count(*),
           json_build_object('count', count(*), '{BATCH_KEY}', json_agg(w.one ORDER BY w.id)), :at
    FROM (SELECT g.id::text COLLATE "C" AS id, g.engine, {why.sql} AS why,
                 json_build_object('id', g.id, {_SNAPSHOT_PAIRS},
                                   'results_deleted', coalesce(p.n, 0)) AS one
          FROM gone g LEFT JOIN per_bot p ON p.bot_id = g.id) w
    GROUP BY w.engine, w.why
    RETURNING resource_count
)
SELECT (SELECT count(*) FROM victims) AS selected,
       (SELECT count(*) FROM gone) AS rows,
       (SELECT count(*) FROM res) AS related,
       (SELECT sum(resource_count) FROM audit) AS audited,
       {last} AS last
"""
        stmt = bound_text(sql, [*p.binds, *why.binds, *binds, *self._common()])
        stmt = stmt.columns(last=last_type if last_type is not None else UTCDateTime())
        return (await session.execute(stmt)).one()

    async def _bots_sqlite(self, session: Runner, size: int, cursor: Any) -> _Batch:
        inner = bot_predicate(self.dialect, self.policy, self.now)
        outer = bot_predicate(self.dialect, self.policy, self.now, alias="bots")
        columns = ", ".join(c.name for c in _GONE_COLUMNS)
        sql = (
            f"DELETE FROM bots WHERE bots.id IN (SELECT b.id FROM bots b WHERE {inner.eligible}"
            f" AND {self._KEYSET} ORDER BY b.deleted_at LIMIT :batch)"
            f" AND {outer.eligible} RETURNING {columns}"
        )
        stmt = bound_text(sql, [*inner.binds, *outer.binds, *self._keyset(cursor, size)])
        gone = (await session.execute(stmt.columns(*_GONE_COLUMNS))).all()
        if not gone:
            return _Batch(0, 0)
        ids = [row.id for row in gone]
        deleted = await session.execute(
            bound_text(
                "DELETE FROM results WHERE bot_id IN :ids RETURNING bot_id",
                [bindparam("ids", ids, type_=Uuid(), expanding=True)],
            ).columns(bot_id=Uuid())
        )
        per_bot: dict[uuid.UUID, int] = {}
        for (bot_id,) in deleted:
            per_bot[bot_id] = per_bot.get(bot_id, 0) + 1
        await session.execute(insert(CleanupAudit), self._bot_batches(gone, per_bot))
        last = max(row.deleted_at for row in gone)
        return _Batch(len(gone), len(gone), sum(per_bot.values()), last)

    def _bot_batches(
        self, gone: Sequence[Any], per_bot: dict[uuid.UUID, int]
    ) -> list[dict[str, Any]]:
        """A batch's audit records, as the PostgreSQL statement writes them: one per engine
        and reason, its bots in id order, each with its snapshot."""
        groups: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
        for row in sorted(gone, key=lambda r: str(r.id)):
            snapshot = {k: jsonable(row._mapping[k]) for k in _SNAPSHOT_COLUMNS}
            one = {"id": str(row.id), **snapshot, "results_deleted": per_bot.get(row.id, 0)}
            why = bot_reason_for(self.policy, dict(row.labels or {}))
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
                "snapshot": {"count": len(bots), BATCH_KEY: bots},
                "deleted_at": at,
            }
            for (engine, why), bots in groups.items()
        ]

    # --- results: orphaned, and past result retention -------------------------------------------
    async def purge_orphaned_results(
        self, tally: Tally, limit: int, max_id: int, table: str | None = None
    ) -> None:
        """``table``: the plan's orphan ids (PostgreSQL, :func:`~botfleet.cleanup.plan.
        orphan_table`), walked by id on one autocommit connection; without it, batches walk
        ``results`` by id (SQLite)."""
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
            await self._loop(KIND_ORPHANED_RESULTS, tally, limit, step)
            return
        async with self.dedicated() as conn:
            await self._loop(
                KIND_ORPHANED_RESULTS, tally, limit, step, connection=conn, autocommit=True
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
        await self._loop(KIND_RESULTS, tally, limit, step)

    def _results_step(
        self,
        kind: str,
        victims: str,
        recheck: str,
        binds: Sequence[Any],
        reason: str,
        *,
        key: tuple[str, Any],
    ) -> Callable[[Runner, int, Any], Awaitable[_Batch]]:
        column, key_type = key
        first = 0 if column == "id" else _FIRST_TS

        async def step(runner: Runner, size: int, cursor: Any) -> _Batch:
            params = [
                *binds,
                bindparam("after", first if cursor is None else cursor, type_=key_type),
                bindparam("batch", size),
            ]
            if self.dialect.postgres:
                return await self._results_pg(runner, kind, victims, recheck, params, reason)
            sql = (
                f"DELETE FROM results AS r WHERE r.id IN (SELECT id FROM ({victims}))"
                f" AND {recheck} RETURNING id, {column}"
            )
            stmt = bound_text(sql, params).columns(**{column: key_type})
            rows = (await runner.execute(stmt)).all()
            if not rows:
                return _Batch(0, 0)
            ids = sorted(int(r[0]) for r in rows)
            await self._audit_results(runner, kind, ids, reason)
            return _Batch(len(ids), len(ids), cursor=max(r[1] for r in rows))

        return step

    async def _results_pg(
        self,
        runner: Runner,
        kind: str,
        victims: str,
        recheck: str,
        params: list[Any],
        reason: str,
    ) -> _Batch:
        sql = f"""
WITH victims AS ({victims}),
gone AS (
    DELETE FROM results r WHERE r.id = ANY(ARRAY(SELECT id FROM victims)) AND {recheck}
    RETURNING r.id
), audit AS (
    INSERT INTO cleanup_audit (run_id, kind, resource_id, reason, actor, resource_count,
                               snapshot, deleted_at)
    SELECT :run_id, '{kind}', min(id)::text || '..' || max(id)::text, :reason, :actor, count(*),
           json_build_object('count', count(*), 'ids', json_agg(id ORDER BY id)), :at
    FROM gone HAVING count(*) > 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM victims) AS selected, (SELECT count(*) FROM gone) AS rows,
       (SELECT max(key) FROM victims) AS last, (SELECT count(*) FROM audit) AS audited
"""
        stmt = bound_text(sql, [*params, *self._common(), bindparam("reason", reason)])
        row = (await runner.execute(stmt)).one()
        last = row.last
        if isinstance(last, datetime) and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        return _Batch(int(row.selected), int(row.rows), cursor=last)

    async def _audit_results(self, runner: Runner, kind: str, ids: list[int], reason: str) -> None:
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
                    "snapshot": {"count": len(ids), "ids": ids},
                    "deleted_at": self.clock(),
                }
            ],
        )


async def session_limits(session: Runner, settings: Settings, *, postgres: bool) -> None:
    """CLEANUP_LOCK_TIMEOUT_MS and CLEANUP_STATEMENT_TIMEOUT_MS for this transaction."""
    if postgres:
        await _set_limits(
            session, settings.cleanup_lock_timeout_ms, settings.cleanup_statement_timeout_ms, False
        )


_SESSION_LIMITS = ("lock_timeout", "statement_timeout", "synchronous_commit")


async def _set_limits(
    session: Runner, lock_ms: int, statement_ms: int, async_commit: bool, local: bool = True
) -> None:
    # One round trip; is_local=true is SET LOCAL: the settings end with the transaction
    # (false: they last for the session, until reset).
    scope = "true" if local else "false"
    extra = f", set_config('synchronous_commit', 'off', {scope})" if async_commit else ""
    await session.execute(
        bound_text(
            f"SELECT set_config('lock_timeout', :lt, {scope}),"
            f" set_config('statement_timeout', :st, {scope}){extra}",
            [bindparam("lt", f"{lock_ms}ms"), bindparam("st", f"{statement_ms}ms")],
        )
    )


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))


async def together(tally: Tally, walks: Sequence[Awaitable[None]]) -> None:
    """Run a stage's walks side by side. The first failure makes the others stop after their
    current batch (never mid-statement: each batch commits or not, whole, and is counted), and
    is raised once all have ended."""
    if len(walks) == 1:
        await walks[0]
        return

    async def guarded(walk: Awaitable[None]) -> None:
        try:
            await walk
        except BaseException:
            tally.aborted = True
            raise

    outcomes = await asyncio.gather(*(guarded(w) for w in walks), return_exceptions=True)
    tally.aborted = False
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
