"""What the database stages would delete, and why — the same code for dry and real runs.

Counts and samples come from indexed SQL (never a list of every id: memory stays flat however
many rows match). On PostgreSQL the counts over ``results`` run slice by slice of bot ids
(:mod:`botfleet.cleanup.result_slices`), and the orphaned results' ids go to a scratch table of
the run's own, which the purge then walks (:mod:`botfleet.cleanup.purge_results`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.cleanup.eligibility import BotRecord, bot_purge_decision
from botfleet.cleanup.plan import SAMPLE_SIZE, SKIPPED_LIMIT, Selection
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect, Fragment, bot_predicate, result_eligible
from botfleet.cleanup.result_slices import Slicing, sliced_count
from botfleet.cleanup.sql import Runner, at_now, bound_text, scalar, uuid_list
from botfleet.constants import KIND_BOT_RESULTS, KIND_BOTS, KIND_ORPHANED_RESULTS, KIND_RESULTS
from botfleet.store.models import Bot

log = logging.getLogger(__name__)


async def max_result_id(session: AsyncSession) -> int:
    return await scalar(session, "SELECT coalesce(max(id), 0) FROM results")


async def select_bots(
    session: AsyncSession,
    dialect: Dialect,
    policy: Policy,
    now: datetime,
    slicing: Slicing | None = None,
) -> tuple[Selection, Selection]:
    """Expired soft-deleted bots, and their results. Held or future-dated ones are reported."""
    bots, results = Selection(KIND_BOTS), Selection(KIND_BOT_RESULTS)
    p = bot_predicate(dialect, policy, now)
    if dialect.postgres:
        # The purgeable from ix_bots_deleted_id (index-only unless a rule reads labels), slice
        # by slice; the held from the small ix_bots_held.
        bots.found = await sliced_count(
            session, f"SELECT count(*) FROM bots b WHERE {{b}} AND {p.eligible}", p.binds, slicing
        )
        held = await scalar(
            session,
            f"SELECT count(*) FROM bots b WHERE {p.range} AND ({p.held}) AND ({p.expired})",
            p.binds,
        )
    else:
        # One pass over the index range counts both the eligible and the held.
        sql = (
            f"SELECT count(*) FILTER (WHERE NOT ({p.held}) AND ({p.expired})),"
            f" count(*) FILTER (WHERE ({p.held}) AND ({p.expired}))"
            f" FROM bots b WHERE {p.range}"
        )
        counts = (await session.execute(bound_text(sql, p.binds))).one()
        bots.found, held = int(counts[0] or 0), int(counts[1] or 0)
    order = " ORDER BY b.deleted_at, b.id"
    for bot in await bot_rows(session, p.eligible + order, p.binds, SAMPLE_SIZE):
        bots.sample.append(bot.id)
        bots.lag_seconds.append(_lag(bot, policy, now))
    if held:
        where = f"{p.range} AND ({p.held}) AND ({p.expired})" + order
        for bot in await bot_rows(session, where, p.binds, SKIPPED_LIMIT):
            bots.skip(bot.id, bot_purge_decision(bot, policy, now).reason)
    future = "b.deleted_at IS NOT NULL AND b.deleted_at > :now"
    ahead = await scalar(session, f"SELECT count(*) FROM bots b WHERE {future}", [at_now(now)])
    if ahead:
        rows = await bot_rows(session, future + order, [at_now(now)], SKIPPED_LIMIT)
        for bot in rows:
            bots.skip(bot.id, bot_purge_decision(bot, policy, now).reason)
        log.warning(
            "%d soft-deleted bots have deleted_at in the future (clock skew?) and are kept: %s",
            ahead,
            ", ".join(b.id for b in rows[:5]),
        )
    bots.skipped_count = held + ahead
    if bots.found and dialect.postgres:
        # Slice by slice of bot ids, each its own short transaction (cleanup/result_slices.py).
        results.found = await sliced_count(
            session,
            "SELECT count(*) FROM results r JOIN bots b ON b.id = r.bot_id"
            f" WHERE {{r}} AND {{b}} AND {p.eligible}",
            p.binds,
            slicing,
        )
    elif bots.found:
        results.found = await scalar(
            session,
            f"SELECT count(*) FROM results r WHERE r.bot_id IN"
            f" (SELECT b.id FROM bots b WHERE {p.eligible})",
            p.binds,
        )
    if bots.found:
        # A sample from the sampled bots: index lookups, not another pass over results.
        stmt = bound_text(
            "SELECT r.id FROM results r WHERE r.bot_id IN :ids ORDER BY r.id LIMIT :n",
            [uuid_list("ids", [uuid.UUID(i) for i in bots.sample]), bindparam("n", SAMPLE_SIZE)],
        )
        results.sample = [str(i) for i in (await session.execute(stmt)).scalars()]
    return bots, results


def _lag(bot: BotRecord, policy: Policy, now: datetime) -> float:
    """How long an eligible item has waited past its eligibility (a metric of the backlog)."""
    days = policy.bot_retention(bot.labels, bot.outcome).days
    if bot.deleted_at is None or days is None:
        return 0.0
    return round((now - bot.deleted_at - timedelta(days=days)).total_seconds(), 3)


async def bot_rows(
    session: AsyncSession, where: str, binds: Iterable[Any], limit: int
) -> list[BotRecord]:
    table = Bot.__table__.c
    stmt = bound_text(
        f"SELECT b.id, b.deleted_at, b.labels, b.status_at_deletion FROM bots b"
        f" WHERE {where} LIMIT :limit",
        [*binds, bindparam("limit", limit)],
    ).columns(id=Uuid(), deleted_at=table.deleted_at.type, labels=table.labels.type)
    rows = (await session.execute(stmt)).all()
    return [BotRecord.of_row(r) for r in rows]


ORPHANED = "r.id <= :max_id AND NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id)"
# PostgreSQL: a run's orphan ids, in an UNLOGGED table of its own (scratch data: no WAL, and any
# of the run's connections can fill it or walk it). Dropped at the end of the run; one left by a
# crashed run is dropped by the next (runs are serialised by the cleanup lock).
ORPHAN_TABLE_PREFIX = "botfleet_cleanup_orphans_"


def orphan_table(run_id: uuid.UUID) -> str:
    return f"{ORPHAN_TABLE_PREFIX}{run_id.hex}"


async def drop_orphan_tables(runner: Runner) -> list[str]:
    """Drop every run's orphan table (left by a run that crashed); returns the names dropped."""
    rows = await runner.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND starts_with(tablename, :prefix)"  # not LIKE: "_" is a wildcard there
        ).bindparams(prefix=ORPHAN_TABLE_PREFIX)
    )
    names = [str(r[0]) for r in rows]
    for name in names:
        await runner.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
    return names


async def select_orphaned_results(
    runner: Runner, max_id: int, slicing: Slicing | None = None, table: str | None = None
) -> Selection:
    """Results whose ``bot_id`` names no bot row, up to the plan's result-id bound.

    Given a ``table`` name (PostgreSQL), their ids are written to that new UNLOGGED table for
    :meth:`~botfleet.cleanup.purge_results.ResultPurge.purge_orphaned_results` to walk; the
    work runs slice by slice of bot ids (see :mod:`botfleet.cleanup.result_slices`).
    """
    sel = Selection(KIND_ORPHANED_RESULTS)
    bound: list[Any] = [bindparam("max_id", max_id)]
    if table is not None:
        prepare = slicing.prepare if slicing is not None else None
        if prepare is not None:
            await prepare(runner)
        await runner.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        await runner.execute(text(f'CREATE UNLOGGED TABLE "{table}" (id bigint NOT NULL)'))
        await runner.commit()
        # Per slice: the orphans' bot ids by a merge anti-join of two index-only ranges (no
        # heap), then their results' ids through ix_results_bot_id (a heap visit per orphan).
        sel.found = await sliced_count(
            runner,
            f'WITH ins AS (INSERT INTO "{table}" SELECT r.id FROM results r'
            " WHERE r.bot_id = ANY(ARRAY(SELECT DISTINCT x.bot_id FROM results x"
            " WHERE {x} AND NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = x.bot_id AND {b})))"
            " AND r.id <= :max_id RETURNING 1) SELECT count(*) FROM ins",
            bound,
            slicing,
        )
        if prepare is not None:
            await prepare(runner)
        await runner.execute(text(f'ALTER TABLE "{table}" ADD PRIMARY KEY (id)'))
        await runner.execute(text(f'ANALYZE "{table}"'))
        sel.sample = await _sample(runner, f'FROM "{table}" r', [])
        await runner.commit()
        return sel
    sel.found = await scalar(runner, f"SELECT count(*) FROM results r WHERE {ORPHANED}", bound)
    if sel.found:
        sel.sample = await _sample(runner, f"FROM results r WHERE {ORPHANED}", bound)
    return sel


async def _sample(runner: Runner, source: str, binds: Iterable[Any]) -> list[str]:
    """The first ids of ``source`` (``FROM … r [WHERE …]``), as a plan's sample."""
    stmt = bound_text(
        f"SELECT r.id {source} ORDER BY r.id LIMIT :n", [*binds, bindparam("n", SAMPLE_SIZE)]
    )
    return [str(i) for i in (await runner.execute(stmt)).scalars()]


def results_where(dialect: Dialect, policy: Policy, now: datetime) -> Fragment:
    """Results of live bots past their result retention, up to the result-id bound."""
    frag = result_eligible(dialect, policy, now)
    return Fragment(f"r.id <= :max_id AND {frag.sql}", [*frag.binds])


async def select_results(
    session: AsyncSession, dialect: Dialect, policy: Policy, now: datetime, max_id: int
) -> Selection:
    sel = Selection(KIND_RESULTS)
    where = results_where(dialect, policy, now)
    binds = [*where.binds, bindparam("max_id", max_id)]
    join = "FROM results r JOIN bots b ON b.id = r.bot_id"
    sel.found = await scalar(session, f"SELECT count(*) {join} WHERE {where.sql}", binds)
    if sel.found:
        sel.sample = await _sample(session, f"{join} WHERE {where.sql}", binds)
    return sel
