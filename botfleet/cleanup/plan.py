"""Selection: what each stage would delete, and why — the same code for dry and real runs.

Counts and samples come from indexed SQL (never a list of every id: memory stays flat however
many rows match); containers come from :mod:`botfleet.cleanup.containers`. A
:class:`Plan` is what a run stores so that ``plan_id`` can execute it later: ``now`` (hence every
cutoff), the policy, a bound on result ids and the explicit container ids. Re-selecting with those
bounds can only find the planned items or fewer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from botfleet.cleanup.eligibility import (
    BotRecord,
    bot_purge_decision,
)
from botfleet.cleanup.keyranges import (
    SLICE_SETTINGS,
    KeyRange,
    estimated_rows,
    key_ranges,
    slice_count,
)
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect, Fragment, bot_predicate, result_eligible
from botfleet.constants import (
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_CONTAINERS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
)
from botfleet.errors import InvalidInput
from botfleet.store.models import Bot, UTCDateTime
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

SAMPLE_SIZE = 20
SKIPPED_LIMIT = 100
PLAN_VERSION = 1
# What `only=` accepts; bot_results always go with their bots.
STAGES = (KIND_BOTS, KIND_RESULTS, KIND_ORPHANED_RESULTS, KIND_CONTAINERS)
# Selection runs on a pooled session, or on a connection of its own (see ORPHAN_TABLE).
Runner = AsyncSession | AsyncConnection


def parse_only(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """``only=bots,containers`` → the stages; :class:`InvalidInput` naming the bad value."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = {item.strip() for item in items if item.strip()}
    if KIND_BOT_RESULTS in out:
        raise InvalidInput("only", f"{KIND_BOT_RESULTS!r} go with their bots; use 'bots'")
    unknown = sorted(out - set(STAGES))
    if unknown or not out:
        bad = repr(unknown[0]) if unknown else "nothing"
        raise InvalidInput(
            "only", f"accepts a comma-separated list of {', '.join(STAGES)}; got {bad}"
        )
    return frozenset(out)


@dataclass
class Selection:
    """One kind's selection: the count, a few ids, and what was left alone on purpose."""

    kind: str
    found: int = 0
    sample: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_count: int = 0
    lag_seconds: list[float] = field(default_factory=list)
    # Set when this stage's selection failed: it must not execute.
    error: dict[str, Any] | None = None

    def skip(self, item_id: str, reason: str, **extra: Any) -> None:
        self.skipped_count += 1
        if len(self.skipped) < SKIPPED_LIMIT:
            self.skipped.append({"id": item_id, "reason": reason, **extra})


@dataclass(frozen=True)
class ContainerTarget:
    """A container the plan would remove: by id, on one engine, with the bot it belonged to."""

    id: str
    engine: str
    bot_id: str | None
    reason: str
    age_seconds: float | None = None
    size_bytes: int | None = None  # its writable layer when selected ("bytes reclaimed")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "engine": self.engine,
            "bot_id": self.bot_id,
            "reason": self.reason,
            "age_seconds": self.age_seconds,
            "size_bytes": self.size_bytes,
        }


@dataclass
class Plan:
    """What a run decided; JSON-storable in ``cleanup_runs.plan`` and re-executable by id."""

    id: str
    now: datetime
    instance: str
    policy: Policy
    stages: tuple[str, ...]
    max_result_id: int
    found: dict[str, int] = field(default_factory=dict)
    containers: list[ContainerTarget] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "id": self.id,
            "now": self.now.isoformat(),
            "instance": self.instance,
            "policy": self.policy.snapshot(),
            "stages": list(self.stages),
            "max_result_id": self.max_result_id,
            "found": dict(self.found),
            "containers": [c.to_json() for c in self.containers],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            id=str(data["id"]),
            now=datetime.fromisoformat(data["now"]),
            instance=str(data["instance"]),
            policy=Policy.from_snapshot(data["policy"]),
            stages=tuple(data["stages"]),
            max_result_id=int(data["max_result_id"]),
            found={str(k): int(v) for k, v in data.get("found", {}).items()},
            containers=[
                ContainerTarget(
                    id=c["id"],
                    engine=c["engine"],
                    bot_id=c.get("bot_id"),
                    reason=c.get("reason", ""),
                    age_seconds=c.get("age_seconds"),
                    size_bytes=c.get("size_bytes"),
                )
                for c in data.get("containers", [])
            ],
        )


def bound_text(sql: str, binds: Iterable[Any] = ()) -> Any:
    """``text()`` with the bound parameters it names, each once (fragments share names)."""
    unique = {b.key: b for b in binds if re.search(rf":{b.key}\b", sql)}
    return text(sql).bindparams(*unique.values())


def _uuid_list(name: str, ids: Sequence[uuid.UUID]) -> Any:
    return bindparam(name, list(ids), type_=Uuid(), expanding=True)


# --- database stages --------------------------------------------------------------------------
async def max_result_id(session: AsyncSession) -> int:
    return await scalar(session, "SELECT coalesce(max(id), 0) FROM results")


async def select_bots(
    session: AsyncSession,
    d: Dialect,
    policy: Policy,
    now: datetime,
    slicing: Slicing | None = None,
) -> tuple[Selection, Selection]:
    """Expired soft-deleted bots, and their results. Held or future-dated ones are reported."""
    bots, results = Selection(KIND_BOTS), Selection(KIND_BOT_RESULTS)
    p = bot_predicate(d, policy, now)
    if d.postgres:
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
    ahead = await scalar(session, f"SELECT count(*) FROM bots b WHERE {future}", [_at(now)])
    if ahead:
        rows = await bot_rows(session, future + order, [_at(now)], SKIPPED_LIMIT)
        for bot in rows:
            bots.skip(bot.id, bot_purge_decision(bot, policy, now).reason)
        log.warning(
            "%d soft-deleted bots have deleted_at in the future (clock skew?) and are kept: %s",
            ahead,
            ", ".join(b.id for b in rows[:5]),
        )
    bots.skipped_count = held + ahead
    if bots.found and d.postgres:
        # Slice by slice of bot ids, each its own short transaction (cleanup/keyranges.py).
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
            [_uuid_list("ids", [uuid.UUID(i) for i in bots.sample]), bindparam("n", SAMPLE_SIZE)],
        )
        results.sample = [str(i) for i in (await session.execute(stmt)).scalars()]
    return bots, results


def _lag(bot: BotRecord, policy: Policy, now: datetime) -> float:
    """How long an eligible item has waited past its eligibility (a metric of the backlog)."""
    days = policy.bot_retention(bot.labels).days
    if bot.deleted_at is None or days is None:
        return 0.0
    return round((now - bot.deleted_at - timedelta(days=days)).total_seconds(), 3)


def _at(now: datetime) -> Any:
    return bindparam("now", now, type_=UTCDateTime())


async def scalar(session: Runner, sql: str, binds: Iterable[Any] = ()) -> int:
    return int((await session.execute(bound_text(sql, binds))).scalar() or 0)


Prepare = Callable[[Runner], Awaitable[None]]


async def results_slices(runner: Runner) -> list[KeyRange]:
    row = (
        await runner.execute(
            text(
                "SELECT reltuples, pg_relation_size(oid) FROM pg_class"
                " WHERE oid = CAST('results' AS regclass)"
            )
        )
    ).one()
    return key_ranges(slice_count(estimated_rows(row[0], int(row[1]))))


def _slice_binds(r: KeyRange) -> tuple[dict[str, str], list[Any]]:
    """``{r}``/``{b}``/``{x}`` → the slice's condition on ``r.bot_id``/``b.id``/``x.bot_id``."""
    binds: list[Any] = [bindparam("slice_lo", r.low, type_=Uuid())]
    if r.high is not None:
        binds.append(bindparam("slice_hi", r.high, type_=Uuid()))

    def cond(col: str) -> str:
        high = f" AND {col} < :slice_hi" if r.high is not None else ""
        return f"{col} >= :slice_lo{high}"

    return {"r": cond("r.bot_id"), "b": cond("b.id"), "x": cond("x.bot_id")}, binds


@dataclass(frozen=True)
class Slicing:
    """How slices run: each in a transaction of its own on a pooled session, ``concurrency``
    at a time, each transaction first ``prepare``d (the cleanup's lock and statement limits)."""

    sessions: SessionFactory
    prepare: Prepare | None = None
    concurrency: int = 1


async def _slice_transaction(runner: Runner, prepare: Prepare | None) -> None:
    """End whatever the runner has open, and set a slice's limits and planner settings."""
    if runner.in_transaction():
        await runner.commit()
    if prepare is not None:
        await prepare(runner)
    pairs = ", ".join(f"set_config('{k}', '{v}', true)" for k, v in SLICE_SETTINGS.items())
    await runner.execute(text(f"SELECT {pairs}"))


def _slice_query(sql: str, key_range: KeyRange, binds: Iterable[Any]) -> Any:
    conds, slice_binds = _slice_binds(key_range)
    for name, cond in conds.items():
        sql = sql.replace("{" + name + "}", cond)
    return bound_text(sql, [*binds, *slice_binds])


async def _run_slice(
    runner: Runner, sql: str, key_range: KeyRange, binds: Iterable[Any], prepare: Prepare | None
) -> list[int]:
    await _slice_transaction(runner, prepare)
    row = (await runner.execute(_slice_query(sql, key_range, binds))).one()
    await runner.commit()
    return [int(v or 0) for v in row]


async def sliced_sums(
    runner: Runner, sql: str, binds: Iterable[Any], slicing: Slicing | None = None
) -> list[int]:
    """Column sums of ``sql`` (with ``{r}``, ``{b}``, ``{x}`` placeholders) over every slice of
    bot ids, each slice in a transaction of its own: no transaction of the selection lasts long.
    Without ``slicing`` (or with a concurrency of 1) the slices run one after another on
    ``runner``; with it, on that many pooled sessions at once."""
    binds = list(binds)
    ranges = await results_slices(runner)
    if runner.in_transaction():
        await runner.commit()
    rows: list[list[int]] = []
    if slicing is None or slicing.concurrency <= 1 or len(ranges) == 1:
        prepare = slicing.prepare if slicing is not None else None
        for key_range in ranges:
            rows.append(await _run_slice(runner, sql, key_range, binds, prepare))
    else:
        pending = list(reversed(ranges))

        async def worker(sessions: SessionFactory, prepare: Prepare | None) -> None:
            async with sessions() as session:
                while pending:
                    key_range = pending.pop()
                    rows.append(await _run_slice(session, sql, key_range, binds, prepare))

        workers = min(slicing.concurrency, len(ranges))
        await asyncio.gather(*(worker(slicing.sessions, slicing.prepare) for _ in range(workers)))
    return [sum(column) for column in zip(*rows, strict=True)] if rows else []


async def sliced_count(
    runner: Runner, sql: str, binds: Iterable[Any], slicing: Slicing | None = None
) -> int:
    sums = await sliced_sums(runner, sql, binds, slicing)
    return sums[0] if sums else 0


async def bot_rows(
    session: AsyncSession, where: str, binds: Iterable[Any], limit: int
) -> list[BotRecord]:
    table = Bot.__table__.c
    stmt = bound_text(
        f"SELECT b.id, b.deleted_at, b.labels FROM bots b WHERE {where} LIMIT :limit",
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
    :meth:`~botfleet.cleanup.execute.Executor.purge_orphaned_results` to walk; the work runs
    slice by slice of bot ids (see :mod:`botfleet.cleanup.keyranges`).
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


def results_where(d: Dialect, policy: Policy, now: datetime) -> Fragment:
    """Results of live bots past their result retention, up to the result-id bound."""
    frag = result_eligible(d, policy, now)
    return Fragment(f"r.id <= :max_id AND {frag.sql}", [*frag.binds])


async def select_results(
    session: AsyncSession, d: Dialect, policy: Policy, now: datetime, max_id: int
) -> Selection:
    sel = Selection(KIND_RESULTS)
    where = results_where(d, policy, now)
    binds = [*where.binds, bindparam("max_id", max_id)]
    join = "FROM results r JOIN bots b ON b.id = r.bot_id"
    sel.found = await scalar(session, f"SELECT count(*) {join} WHERE {where.sql}", binds)
    if sel.found:
        sel.sample = await _sample(session, f"{join} WHERE {where.sql}", binds)
    return sel
