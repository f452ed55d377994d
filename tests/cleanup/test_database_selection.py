"""The database stages' selection: its SQL selects exactly what the pure decisions allow, its
samples are bounded, the orphan bound holds, and PostgreSQL can count from the partial indexes."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from sqlalchemy import Uuid, bindparam

from botfleet.cleanup.database_selection import (
    results_where,
    select_bots,
    select_orphaned_results,
    select_results,
)
from botfleet.cleanup.eligibility import BotRecord, bot_purge_decision, result_decision
from botfleet.cleanup.plan import SAMPLE_SIZE
from botfleet.cleanup.policy import Policy, Rule, is_held
from botfleet.cleanup.predicates import Dialect, bot_predicate
from botfleet.cleanup.sql import bound_text
from botfleet.config import Settings
from botfleet.store.models import Result
from tests.conftest import postgres_only
from tests.support.cleanup import days
from tests.support.store import Store, store

__all__ = ["store"]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(
    bot_retention_days=7,
    result_retention_days=20,
    rules=(
        Rule(number=1, match={"env": "prod"}, bot_retention_days=30, result_retention_days=60),
        Rule(number=2, match={"team": "keep"}, keeps_bots=True, keeps_results=True),
        Rule(number=3, match={"env": "dev", "tier": "1"}, bot_retention_days=0),
        Rule(number=4, match={"team": "results-only"}, result_retention_days=5),
    ),
)
LABEL_SETS = [
    {},
    {"env": "prod"},
    {"team": "keep"},
    {"team": "keep", "env": "prod"},  # rule 1 comes first
    {"env": "dev", "tier": "1"},
    {"env": "dev", "tier": "2"},
    {"team": "results-only"},
    {"botfleet.hold": "true"},
    {"botfleet.hold": "True", "env": "dev", "tier": "1"},
]
DELETED_AGO = [None, days(-1), days(0.5), days(6), days(8), days(29), days(31), days(400)]


async def test_bot_sql_agrees_with_the_pure_decision(settings: Settings, store: Store) -> None:
    """Every label set by deletion age: the SQL selects exactly what bot_purge_decision allows."""
    bots: dict[uuid.UUID, BotRecord] = {}
    for labels, ago in itertools.product(LABEL_SETS, DELETED_AGO):
        deleted_at = None if ago is None else NOW - ago
        bot_id = await store.bot(deleted_at=deleted_at, labels=labels)
        bots[bot_id] = BotRecord(str(bot_id), deleted_at, labels)
    d = Dialect(postgres=not settings.is_sqlite)
    p = bot_predicate(d, POLICY, NOW)
    async with store.sessions() as session:
        rows = await session.execute(
            bound_text(f"SELECT b.id FROM bots b WHERE {p.eligible}", p.binds).columns(id=Uuid())
        )
        selected = {row.id for row in rows}
        sel, _ = await select_bots(session, d, POLICY, NOW)
    expected = {i for i, bot in bots.items() if bot_purge_decision(bot, POLICY, NOW).eligible}
    assert selected == expected
    assert sel.found == len(expected)
    # Reported as skipped: on hold though past retention, or deleted "in the future".
    assert {s["id"] for s in sel.skipped} == {
        str(i)
        for i, bot in bots.items()
        if bot.deleted_at is not None
        and (bot.deleted_at > NOW or (is_held(bot.labels) and expired_without_hold(bot)))
    }


def expired_without_hold(bot: BotRecord) -> bool:
    labels = {k: v for k, v in bot.labels.items() if k != "botfleet.hold"}
    return bot_purge_decision(BotRecord(bot.id, bot.deleted_at, labels), POLICY, NOW).eligible


async def test_result_sql_agrees_with_the_pure_decision(settings: Settings, store: Store) -> None:
    ages = [days(1), days(4), days(6), days(19), days(21), days(59), days(61)]
    expected: set[int] = set()
    for labels, gone in itertools.product(LABEL_SETS, (False, True)):
        bot_id = await store.bot(labels=labels, deleted_at=NOW - days(1) if gone else None)
        bot = BotRecord(str(bot_id), NOW - days(1) if gone else None, labels)
        async with store.sessions() as session, session.begin():
            rows = [Result(bot_id=bot_id, created_at=NOW - age) for age in ages]
            session.add_all(rows)
            await session.flush()
            expected |= {
                r.id
                for r, age in zip(rows, ages, strict=True)
                if result_decision(NOW - age, bot, POLICY, NOW).eligible
            }
    await store.orphans(2)
    d = Dialect(postgres=not settings.is_sqlite)
    where = results_where(d, POLICY, NOW)
    async with store.sessions() as session:
        rows = await session.execute(
            bound_text(
                f"SELECT r.id FROM results r JOIN bots b ON b.id = r.bot_id WHERE {where.sql}",
                [*where.binds, bindparam("max_id", 10**9)],
            )
        )
        selected = {row.id for row in rows}
        sel = await select_results(session, d, POLICY, NOW, 10**9)
    assert selected == expected and sel.found == len(expected)


async def test_samples_are_bounded_and_oldest_first(settings: Settings, store: Store) -> None:
    ids = [await store.bot(deleted_at=NOW - days(8 + i), results=2) for i in range(SAMPLE_SIZE + 5)]
    await store.orphans(SAMPLE_SIZE + 3)
    d = Dialect(postgres=not settings.is_sqlite)
    async with store.sessions() as session:
        bots, results = await select_bots(session, d, Policy(7), NOW)
        orphans = await select_orphaned_results(session, 10**9)
    assert bots.found == SAMPLE_SIZE + 5 and results.found == 2 * (SAMPLE_SIZE + 5)
    assert bots.sample == [str(i) for i in reversed(ids)][:SAMPLE_SIZE]
    assert len(results.sample) == SAMPLE_SIZE and len(orphans.sample) == SAMPLE_SIZE
    assert orphans.found == SAMPLE_SIZE + 3
    assert all(lag > 0 for lag in bots.lag_seconds)


async def test_the_orphan_bound_excludes_later_results(settings: Settings, store: Store) -> None:
    first = await store.orphans(2)
    await store.orphans(3)
    async with store.sessions() as session:
        sel = await select_orphaned_results(session, max(first))
    assert sel.found == 2


def test_a_policy_that_keeps_everything_selects_nothing() -> None:
    keep_all = Policy(7, rules=(Rule(number=1, match={}, keeps_bots=True),))
    assert bot_predicate(Dialect(True), keep_all, NOW).eligible.startswith("false")


@postgres_only
async def test_purge_counts_can_read_the_partial_indexes_alone(
    settings: Settings, store: Store
) -> None:
    """The hold test in predicates.py and the predicates of ix_bots_deleted_id / ix_bots_held
    (store/models.py) must stay the same expression, or PostgreSQL cannot use the indexes."""
    for i in range(30):
        await store.bot(deleted_at=NOW - days(8 + i), results=1)
    d = Dialect(postgres=True)
    p = bot_predicate(d, Policy(7), NOW)
    async with store.sessions() as session, session.begin():
        # Within a transaction that is rolled back: leave the planner no other index and no
        # sequential scan, so a partial index shows in the plan only if the query implies its
        # predicate.
        for ddl in (
            "ALTER TABLE bots DROP CONSTRAINT pk_bots",
            "DROP INDEX ix_bots_deleted_at",
            "DROP INDEX ix_bots_status",
            "SET LOCAL enable_seqscan = off",
            "SET LOCAL enable_bitmapscan = off",
        ):
            await session.execute(bound_text(ddl))
        purgeable = await session.execute(
            bound_text(f"EXPLAIN SELECT count(*) FROM bots b WHERE {p.eligible}", p.binds)
        )
        held = await session.execute(
            bound_text(
                f"EXPLAIN SELECT count(*) FROM bots b WHERE {p.range} AND ({p.held})", p.binds
            )
        )
        purgeable_plan = "\n".join(r[0] for r in purgeable)
        held_plan = "\n".join(r[0] for r in held)
        await session.rollback()
    assert "using ix_bots_deleted_id" in purgeable_plan, purgeable_plan
    assert "using ix_bots_held" in held_plan, held_plan
