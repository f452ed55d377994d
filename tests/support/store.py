"""The test's own window on the store: rows written straight into it, changed behind the app's
back, and read back directly — never through the app's services or API.

One class for the two roles a test needs:

- ``Store(settings)``: a pool like the app's (sessions named ``botfleet``), whose ``sessions`` a
  test may hand to the service under test;
- ``Store(settings, checker=True)``: a small pool named :data:`CHECKER`, for the invariant
  checks of scenarios that terminate or count the app's sessions (they leave this one alone).

Reads are SQL the test wrote itself, with only the drivers' differences smoothed over: ids come
back as canonical strings (the form the API, plans and the audit trail use; methods that take an
id accept a ``UUID`` or a string), JSON decoded. Two exceptions go through the table definitions:
``count()`` takes SQLAlchemy expressions, and ``runs()`` returns times as datetimes on both
backends, so that tests can compare them. Audit items are dicts, one per resource, as
``botfleet.cleanup.audit.expand`` reads a stored record (a batch of bots is one per bot).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy import delete, func, insert, select, update

from botfleet.cleanup.audit import expand
from botfleet.config import Settings
from botfleet.store.models import Bot, CleanupAudit, CleanupRun, Result
from botfleet.store.session import create_engine, create_session_factory
from tests.conftest import TABLES

CHECKER = "botfleet-checker"
RESULT_KINDS = ("orphaned_results", "results", "results_over_quota")
BotId = uuid.UUID | str
T = TypeVar("T")


class Store:
    """Seed, change and read the store of ``settings`` (see the module's docstring)."""

    def __init__(self, settings: Settings, *, checker: bool = False) -> None:
        self.settings = settings
        options: dict[str, Any] = {}
        if checker:
            options.update(pool_size=2, max_overflow=2)
            if not settings.is_sqlite:
                options["connect_args"] = {"server_settings": {"application_name": CHECKER}}
        self.engine = create_engine(settings, **options)
        self.sessions = create_session_factory(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- seeding -------------------------------------------------------------------------------
    async def bot(
        self,
        *,
        deleted_at: datetime | None = None,
        labels: dict[str, str] | None = None,
        results: int = 0,
        name: str | None = None,
        env: dict[str, str] | None = None,
        outcome: str | None = None,
        status: str | None = None,
        created_at: datetime | None = None,
        status_changed_at: datetime | None = None,
        result_times: Iterable[datetime] = (),
    ) -> uuid.UUID:
        """One bot (soft-deleted at ``deleted_at`` after ending as ``outcome``, or live with
        ``status``), with ``results`` results now and one at each of ``result_times``."""
        async with self.sessions() as session, session.begin():
            bot = Bot(
                id=uuid.uuid4(),
                name=name or f"bot-{uuid.uuid4().hex[:8]}",
                image="botfleet/sample-bot:latest",
                token_hash="0" * 64,
                labels=labels or {},
                env=env or {},
                status="deleted" if deleted_at else (status or "running"),
                deleted_at=deleted_at,
                status_at_deletion=outcome if deleted_at else None,
            )
            if created_at is not None:
                bot.created_at = created_at
            if status_changed_at is not None:
                bot.status_changed_at = status_changed_at
            session.add(bot)
            session.add_all(Result(bot_id=bot.id, data={"n": n}) for n in range(results))
            session.add_all(
                Result(bot_id=bot.id, created_at=at, data={"at": at.isoformat()})
                for at in result_times
            )
            return bot.id

    async def seed_bots(
        self,
        n: int,
        *,
        results_per_bot: int = 1,
        deleted_ago: timedelta | None = timedelta(days=30),
        chunk: int = 2000,
        name: str = "seed",
    ) -> list[uuid.UUID]:
        """``n`` bots fast, in bulk (soft-deleted ``deleted_ago`` ago, or live with None)."""
        now = datetime.now(UTC)
        ids = [uuid.uuid4() for _ in range(n)]
        deleted_at = now - deleted_ago if deleted_ago is not None else None
        status = "deleted" if deleted_ago is not None else "exited"
        async with self.engine.begin() as conn:
            for start in range(0, n, chunk):
                part = ids[start : start + chunk]
                await conn.execute(
                    insert(Bot),
                    [
                        {
                            "id": i,
                            "name": f"{name}-{i.hex[:12]}",
                            "image": "botfleet/sample-bot:latest",
                            "env": {},
                            "labels": {},
                            "status": status,
                            "token_hash": "0" * 64,
                            "created_at": now - timedelta(days=60),
                            "updated_at": now,
                            "deleted_at": deleted_at,
                        }
                        for i in part
                    ],
                )
                if results_per_bot:
                    await conn.execute(
                        insert(Result),
                        [
                            {"bot_id": i, "created_at": now - timedelta(days=40), "data": {"n": k}}
                            for i in part
                            for k in range(results_per_bot)
                        ],
                    )
        return ids

    async def orphans(self, count: int, bot_id: uuid.UUID | None = None) -> list[int]:
        """Results whose bot_id names no bot row; their ids."""
        owner = bot_id or uuid.uuid4()
        async with self.sessions() as session, session.begin():
            rows = [Result(bot_id=owner, data={"orphan": True}) for _ in range(count)]
            session.add_all(rows)
            await session.flush()
            return [r.id for r in rows]

    # --- changes behind the app's back ---------------------------------------------------------
    async def restore(self, bot_id: BotId) -> None:
        await self._set_bot(bot_id, deleted_at=None, status="running")

    async def soft_delete(self, bot_id: BotId, at: datetime) -> None:
        await self._set_bot(bot_id, deleted_at=at, status="deleted")

    async def hard_delete(self, bot_id: BotId) -> None:
        """A bot row removed behind the cleanup's back: its results become orphans."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.text("DELETE FROM bots WHERE id = :id").bindparams(id=_id(bot_id))
            )

    async def wipe(self) -> None:
        """Every row of every table: the next scene starts from nothing."""
        async with self.engine.begin() as conn:
            for model in (Result, Bot, CleanupAudit, CleanupRun):
                await conn.execute(delete(model))

    async def _set_bot(self, bot_id: BotId, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(Bot).where(Bot.id == _id(bot_id)).values(**values))

    # --- reading: the test's own SQL -------------------------------------------------------------
    async def rows(self, sql: str, **params: Any) -> list[sa.Row[*tuple[Any, ...]]]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(sql), params)).all())

    async def value(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.text(sql), params)).scalar()

    async def digest(self, table: str) -> str:
        """A hash of every row of ``table`` as stored, in id order: equal digests, equal rows."""
        h = hashlib.sha256()
        for row in await self.rows(f"SELECT * FROM {table} ORDER BY id"):
            h.update(repr(tuple(_plain(v) for v in row)).encode())
        return h.hexdigest()

    async def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {t: int(await self.value(f"SELECT count(*) FROM {t}") or 0) for t in TABLES}

    async def results_of(self, bot_id: BotId) -> int:
        sql = "SELECT count(*) FROM results WHERE bot_id = :b"
        return int(await self.value(sql, b=self._bind(bot_id)) or 0)

    async def orphaned_results(self) -> int:
        """Results whose bot row is gone."""
        return int(
            await self.value(
                "SELECT count(*) FROM results r"
                " WHERE NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id)"
            )
            or 0
        )

    async def audit_count(self, kind: str | None = None) -> int:
        """How many resources (of ``kind``) the audit records as deleted; a batch counts its
        members."""
        sql = "SELECT coalesce(sum(resource_count), 0) FROM cleanup_audit"
        if kind is None:
            return int(await self.value(sql))
        return int(await self.value(sql + " WHERE kind = :k", k=kind))

    async def bot_ids(self, live: bool | None = None) -> set[str]:
        """Every bot's id; only the live (``True``) or soft-deleted (``False``) ones."""
        where = {
            None: "",
            True: " WHERE deleted_at IS NULL",
            False: " WHERE deleted_at IS NOT NULL",
        }
        return {_str(r[0]) for r in await self.rows(f"SELECT id FROM bots{where[live]}")}

    async def bots_left(self, ids: Iterable[T]) -> set[T]:
        """Those of ``ids`` (UUIDs or strings) whose bot row is still there."""
        present = await self.bot_ids()
        return {i for i in ids if str(i) in present}

    async def live_bots(self) -> dict[str, tuple[str | None, str | None]]:
        """Live bot id → (container id, engine)."""
        rows = await self.rows("SELECT id, container_id, engine FROM bots WHERE deleted_at IS NULL")
        return {_str(r[0]): (r[1], r[2]) for r in rows}

    async def result_ids(self) -> set[int]:
        return {int(r[0]) for r in await self.rows("SELECT id FROM results")}

    async def results_per_bot(self) -> dict[str, int]:
        rows = await self.rows("SELECT bot_id, count(*) FROM results GROUP BY bot_id")
        return {_str(r[0]): int(r[1]) for r in rows}

    async def result_data(self, bot_id: BotId) -> list[Any]:
        """The ``data`` of every result of ``bot_id`` as stored (JSON decoded), in id order."""
        rows = await self.rows(
            "SELECT data FROM results WHERE bot_id = :b ORDER BY id", b=self._bind(bot_id)
        )
        return [_json(r[0]) for r in rows]

    async def audit_records(self, run_id: BotId) -> list[dict[str, Any]]:
        """The run's audit rows as stored (a batch of bots is one row), in id order."""
        rows = await self.rows(
            "SELECT * FROM cleanup_audit WHERE run_id = :r ORDER BY id", r=self._bind(run_id)
        )
        return [_audit_record(r) for r in rows]

    async def audit(
        self, run_id: BotId | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The audit trail as readers see it, one item per bot (or container, or batch of
        results), of one run and/or one kind: ``kind``, ``resource_id``, ``snapshot``,
        ``engine``, ``reason``, ``actor``, ``deleted_at``, ``run_id``…"""
        where, params = [], {}
        if run_id is not None:
            where.append("run_id = :r")
            params["r"] = self._bind(run_id)
        if kind is not None:
            where.append("kind = :k")
            params["k"] = kind
        sql = "SELECT * FROM cleanup_audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        items = []
        for row in await self.rows(sql + " ORDER BY id", **params):
            record = _audit_record(row)
            items += [item | {"run_id": record["run_id"]} for item in expand(record)]
        return items

    async def deleted_ids(self, kind: str) -> list[str]:
        """Every resource id the audit says was deleted, once per deletion (results expanded)."""
        ids: list[str] = []
        for item in await self.audit(kind=kind):
            if kind in RESULT_KINDS:
                ids.extend(str(i) for i in (item["snapshot"] or {}).get("ids", []))
            else:
                ids.append(item["resource_id"])
        return ids

    async def double_deletions(self) -> dict[str, list[str]]:
        """Resource ids the audit records as deleted more than once, per kind."""
        out: dict[str, list[str]] = {}
        for kind in ("bots", "containers", *RESULT_KINDS):
            counted = Counter(await self.deleted_ids(kind))
            dupes = sorted(i for i, n in counted.items() if n > 1)
            if dupes:
                out[kind] = dupes
        return out

    def _bind(self, value: BotId) -> Any:
        # SQLite stores Uuid() as 32 hex digits; PostgreSQL takes a uuid.
        return _id(value).hex if self.settings.is_sqlite else _id(value)

    # --- reading: through the table definitions ------------------------------------------------
    async def count(self, model: Any, *where: Any) -> int:
        """Rows of ``model``'s table matching every ``where`` clause (SQLAlchemy expressions)."""
        query = select(func.count()).select_from(model)
        for clause in where:
            query = query.where(clause)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def runs(self) -> list[dict[str, Any]]:
        """Every cleanup run's row, oldest first (``id`` as a string)."""
        query = select(CleanupRun.__table__).order_by(CleanupRun.started_at)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(r._mapping) | {"id": str(r.id)} for r in rows]


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """The test's store on the ``settings`` fixture's database."""
    s = Store(settings)
    try:
        yield s
    finally:
        await s.close()


# --- invariants --------------------------------------------------------------------------------
async def whole(store: Store, ids: list[uuid.UUID], results_per_bot: int) -> int:
    """Each seeded bot is intact with all its results, or gone with none and one audit item.
    Returns how many are gone."""
    present = await store.bot_ids()
    per_bot = await store.results_per_bot()
    for bot in map(str, ids):
        assert per_bot.get(bot, 0) == (results_per_bot if bot in present else 0), bot
    gone = {str(b) for b in ids} - present
    assert set(await store.deleted_ids("bots")) == gone
    return len(gone)


def overlapping(runs: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of finished runs whose [started_at, finished_at] intervals overlap."""
    done = sorted((r for r in runs if r["finished_at"] is not None), key=lambda r: r["started_at"])
    out = []
    latest: dict[str, Any] | None = None
    for run in done:
        if latest is not None and run["started_at"] < latest["finished_at"]:
            out.append((latest["id"], run["id"]))
        if latest is None or run["finished_at"] > latest["finished_at"]:
            latest = run
    return out


def _id(value: BotId) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _str(value: Any) -> str:
    """An id as SQL returned it (a uuid, or SQLite's 32 hex digits) in its canonical form."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _audit_record(row: sa.Row[*tuple[Any, ...]]) -> dict[str, Any]:
    record = dict(row._mapping)
    record["run_id"] = _str(record["run_id"])
    record["snapshot"] = _json(record["snapshot"])
    return record


def _plain(value: Any) -> Any:
    """A stored value in one form whatever the driver returned (digests compare these)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return str(value) if isinstance(value, uuid.UUID) else value
