"""Per bot, which of its results a quota and the budget take (PostgreSQL): one key, its *cut*.

A bot's victims are always its oldest results (ranked newest first, they are the ranks past
what it keeps), so one key bounds them: every result of the bot up to the cut ``(ct, ci)``
(its newest victim), among those up to the plan's id bound, goes; those up to ``(qt, qi)`` go
for its quota, the others for the budget. A cut is found by index probes of
``ix_results_bot_recent`` read backwards — the quota's: the result at offset
``max_results_per_bot``; the budget's: the older of the one past the floor and the newest at
or before the boundary — never by ranking a bot's results (bench/quota.py).

The stage works from a table of the run's own holding every bot's cut (:class:`CutsTable`),
filled a slice of bots per statement; the plan's sample reads the cuts of its first bots.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, bindparam, text

from botfleet.cleanup.plan import SAMPLE_SIZE
from botfleet.cleanup.predicates import Fragment
from botfleet.cleanup.quota_terms import BudgetBoundary
from botfleet.cleanup.sql import Runner, bound_text
from botfleet.store.models import UTCDateTime

CUTS_TABLE_PREFIX = "botfleet_cleanup_quota_"
# Bots whose cuts one statement finds: each probe reads about a quota's worth of index entries,
# so a slice stays a short transaction (the stage's target, bench/quota.py).
BOTS_PER_FILL = 1000

_NEWEST_FIRST = "ORDER BY r.created_at DESC, r.id DESC"
# Over the bot's results (``r``) and its cut (``c``): the result goes for its quota.
FOR_QUOTA = "(c.qi IS NOT NULL AND (r.created_at, r.id) <= (c.qt, c.qi))"
# The result is one of the bot's victims.
WITHIN_CUT = "(r.id <= :max_id AND (r.created_at, r.id) <= (c.ct, c.ci))"


def cuts(terms: Fragment, boundary: BudgetBoundary | None) -> Fragment:
    """``(bot_id, qt, qi, ct, ci)`` for every bot of ``terms`` (``ct`` NULL: none of its
    results goes). Binds ``:max_id``; the boundary's own."""
    probe = "SELECT r.created_at, r.id FROM results r WHERE {gate} r.bot_id = q.id AND"
    quota = (
        f"LEFT JOIN LATERAL ({probe.format(gate='q.quota IS NOT NULL AND')} r.id <= :max_id"
        f" {_NEWEST_FIRST} OFFSET q.quota LIMIT 1) vq ON true"
    )
    if boundary is None:
        return Fragment(
            "SELECT q.id AS bot_id, vq.created_at AS qt, vq.id AS qi, vq.created_at AS ct,"
            f" vq.id AS ci FROM ({terms.sql}) q {quota}",
            terms.binds,
        )
    # Past the floor (never the newest result): rank floor + 1, the newest candidate; at or
    # before the boundary: the newest the boundary reaches (its priority only).
    floor = (
        f"LEFT JOIN LATERAL ({probe.format(gate='q.prio <= :bp AND')} r.id <= :max_id"
        f" {_NEWEST_FIRST} OFFSET greatest(q.floor, 1) LIMIT 1) vf ON true"
    )
    reach = (
        f"LEFT JOIN LATERAL ({probe.format(gate='q.prio = :bp AND')} r.id <= :max_id"
        f" AND (r.created_at, r.id) <= (:bt, :bi) {_NEWEST_FIRST} LIMIT 1) vb ON true"
    )
    budget = {
        col: f"CASE WHEN q.prio < :bp THEN vf.{col} WHEN vf.id IS NULL OR vb.id IS NULL"
        f" THEN NULL WHEN (vf.created_at, vf.id) <= (vb.created_at, vb.id) THEN vf.{col}"
        f" ELSE vb.{col} END"
        for col in ("created_at", "id")
    }
    inner = (
        "SELECT q.id AS bot_id, vq.created_at AS qt, vq.id AS qi,"
        f" {budget['created_at']} AS bt, {budget['id']} AS bi"
        f" FROM ({terms.sql}) q {quota} {floor} {reach}"
    )
    # The newer of the two cuts: the quota's victims and the budget's, together.
    newer = "s.bi IS NULL OR (s.qi IS NOT NULL AND (s.qt, s.qi) >= (s.bt, s.bi))"
    return Fragment(
        f"SELECT s.bot_id, s.qt, s.qi, CASE WHEN {newer} THEN s.qt ELSE s.bt END AS ct,"
        f" CASE WHEN {newer} THEN s.qi ELSE s.bi END AS ci FROM ({inner}) s",
        [*terms.binds, *boundary_binds(boundary)],
    )


def boundary_binds(boundary: BudgetBoundary) -> list[Any]:
    return [
        bindparam("bp", boundary.priority, Integer()),
        bindparam("bt", boundary.created_at, UTCDateTime()),
        bindparam("bi", boundary.id, BigInteger()),
    ]


async def sample_ids(
    runner: Runner, terms: Fragment, boundary: BudgetBoundary | None, max_id: int
) -> list[str]:
    """The plan's sample: the first victims in (bot, id) order, from the first bots' cuts
    (PostgreSQL stops once it has enough)."""
    cut = cuts(terms, boundary)
    stmt = bound_text(
        f"SELECT x.id FROM ({cut.sql}) c CROSS JOIN LATERAL (SELECT r.id FROM results r"
        f" WHERE r.bot_id = c.bot_id AND {WITHIN_CUT} ORDER BY r.id LIMIT :n) x"
        " WHERE c.ci IS NOT NULL ORDER BY c.bot_id, x.id LIMIT :n",
        [*cut.binds, bindparam("max_id", max_id, BigInteger()), bindparam("n", SAMPLE_SIZE)],
    )
    return [str(i) for i in (await runner.execute(stmt)).scalars()]


class CutsTable:
    """Every bot's cut, in an UNLOGGED table of the run's own (the stage's walks, on
    connections of their own, all read it); dropped when the stage ends, and one a crashed
    run left behind is dropped by the next (:func:`drop_leftovers`)."""

    def __init__(self, run_id: uuid.UUID) -> None:
        self.name = f"{CUTS_TABLE_PREFIX}{run_id.hex}"
        # The newest cut's time: no result created later is anyone's victim (None: none is).
        self.newest: datetime | None = None

    async def fill(
        self, runner: Runner, terms: Fragment, boundary: BudgetBoundary | None, max_id: int
    ) -> int:
        """Created and filled, :data:`BOTS_PER_FILL` bots per statement (each its own
        transaction); how many bots have results to lose."""
        await runner.execute(
            text(
                f'CREATE UNLOGGED TABLE "{self.name}" (bot_id uuid PRIMARY KEY,'
                " qt timestamptz, qi bigint, ct timestamptz NOT NULL, ci bigint NOT NULL)"
            )
        )
        cut = cuts(terms, boundary)
        sql = f"""
WITH chunk AS (
    SELECT b.id FROM bots b WHERE b.id > CAST(:after AS uuid) ORDER BY b.id LIMIT :n
), cut AS (
    INSERT INTO "{self.name}"
    SELECT c.* FROM ({cut.sql}) c
    WHERE c.bot_id > CAST(:after AS uuid)
      AND c.bot_id <= (SELECT id FROM chunk ORDER BY id DESC LIMIT 1) AND c.ci IS NOT NULL
    RETURNING 1
)
SELECT (SELECT max(id::text) FROM chunk) AS last, (SELECT count(*) FROM cut) AS cut
"""
        after, total = str(uuid.UUID(int=0)), 0
        while True:
            stmt = bound_text(
                sql,
                [
                    *cut.binds,
                    bindparam("max_id", max_id, BigInteger()),
                    bindparam("after", after, String()),
                    bindparam("n", BOTS_PER_FILL),
                ],
            )
            row = (await runner.execute(stmt)).one()
            if runner.in_transaction():
                await runner.commit()
            if row.last is None:
                break
            after, total = str(row.last), total + int(row.cut)
        await runner.execute(text(f'ANALYZE "{self.name}"'))
        newest = text(f'SELECT max(ct) FROM "{self.name}"').columns(max=UTCDateTime())
        self.newest = (await runner.execute(newest)).scalar()
        if runner.in_transaction():
            await runner.commit()
        return total

    async def drop(self, runner: Runner) -> None:
        await runner.execute(text(f'DROP TABLE IF EXISTS "{self.name}"'))


async def drop_leftovers(runner: Runner) -> None:
    """Cut tables of runs that crashed (one cleanup runs at a time: none is in use)."""
    rows = await runner.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND starts_with(tablename, :prefix)"  # not LIKE: "_" is a wildcard there
        ).bindparams(prefix=CUTS_TABLE_PREFIX)
    )
    for name in [str(r[0]) for r in rows]:
        await runner.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
