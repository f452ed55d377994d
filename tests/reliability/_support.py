"""What the reliability and security scenarios share: their size, their figures, and invariant
checkers that read the database (SQL) and the engines (docker SDK) directly — never the app's own
answers.

``BOTFLEET_SOAK=1`` (``make soak``) makes every scenario longer and bigger;
``BOTFLEET_FIGURES=path`` appends each scenario's figures to ``path`` as JSON lines (the figures
that docs/reliability.md publishes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.cleanup.audit import expand
from botfleet.config import Settings
from botfleet.store.session import create_engine

SOAK = os.environ.get("BOTFLEET_SOAK", "").strip() == "1"
TABLES = ("bots", "results", "cleanup_runs", "cleanup_audit")
RESULT_KINDS = ("orphaned_results", "results")
CHECKER = "botfleet-checker"


def scale(default: Any, soak: Any) -> Any:
    """The scenario's size: ``default`` in ``make test``, ``soak`` in ``make soak``."""
    return soak if SOAK else default


def record_figure(scenario: str, **figures: Any) -> None:
    """Print one scenario's figures and, with ``BOTFLEET_FIGURES`` set, append them there."""
    line = {"scenario": scenario, "soak": SOAK, **figures}
    print(f"FIGURES {json.dumps(line, sort_keys=True)}")
    path = os.environ.get("BOTFLEET_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")


# --- the database, read with plain SQL ---------------------------------------------------------
class Db:
    """The test's own connection pool on the store, for SQL the app never ran."""

    def __init__(self, settings: Settings) -> None:
        self.postgres = not settings.is_sqlite
        # Named apart from the app's sessions ("botfleet"), which scenarios terminate or count.
        extra: dict[str, Any] = (
            {"connect_args": {"server_settings": {"application_name": CHECKER}}}
            if self.postgres
            else {}
        )
        self.engine: AsyncEngine = create_engine(settings, pool_size=2, max_overflow=2, **extra)

    async def close(self) -> None:
        await self.engine.dispose()

    async def rows(self, sql: str, **params: Any) -> list[sa.Row[Any]]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(sql), params)).all())

    async def value(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.text(sql), params)).scalar()

    async def counts(self) -> dict[str, int]:
        return {t: int(await self.value(f"SELECT count(*) FROM {t}") or 0) for t in TABLES}

    async def digest(self, table: str) -> str:
        """A hash of every row of ``table`` in id order: equal digests, equal contents."""
        h = hashlib.sha256()
        for row in await self.rows(f"SELECT * FROM {table} ORDER BY id"):
            h.update(repr(tuple(_plain(v) for v in row)).encode())
        return h.hexdigest()

    async def orphaned_results(self) -> int:
        return int(
            await self.value(
                "SELECT count(*) FROM results r"
                " WHERE NOT EXISTS (SELECT 1 FROM bots b WHERE b.id = r.bot_id)"
            )
            or 0
        )

    async def bot_ids(self, live: bool | None = None) -> set[str]:
        where = {
            None: "",
            True: " WHERE deleted_at IS NULL",
            False: " WHERE deleted_at IS NOT NULL",
        }
        return {_uuid(r[0]) for r in await self.rows(f"SELECT id FROM bots{where[live]}")}

    async def live_bots(self) -> dict[str, tuple[str | None, str | None]]:
        """Live bot id → (container id, engine)."""
        rows = await self.rows("SELECT id, container_id, engine FROM bots WHERE deleted_at IS NULL")
        return {_uuid(r[0]): (r[1], r[2]) for r in rows}

    async def results_per_bot(self) -> dict[str, int]:
        rows = await self.rows("SELECT bot_id, count(*) FROM results GROUP BY bot_id")
        return {_uuid(r[0]): int(r[1]) for r in rows}

    async def result_data(self, bot_id: str) -> list[Any]:
        rows = await self.rows(
            "SELECT data FROM results WHERE bot_id = :b", b=_bind_uuid(bot_id, self.postgres)
        )
        return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]

    async def runs(self) -> list[dict[str, Any]]:
        rows = await self.rows(
            "SELECT id, trigger, dry_run, status, started_at, finished_at, owner, report"
            " FROM cleanup_runs ORDER BY started_at"
        )
        out = []
        for r in rows:
            run = dict(r._mapping)
            run["id"] = _uuid(run["id"])
            if isinstance(run["report"], str):
                run["report"] = json.loads(run["report"])
            out.append(run)
        return out

    async def audit(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The audit trail as readers see it: one item per bot (a batch record expanded)."""
        sql = (
            "SELECT id, run_id, kind, resource_id, engine, reason, actor, deleted_at, snapshot"
            " FROM cleanup_audit"
        )
        params: dict[str, Any] = {}
        if kind is not None:
            sql += " WHERE kind = :kind"
            params["kind"] = kind
        out = []
        for r in await self.rows(sql + " ORDER BY id", **params):
            record = dict(r._mapping)
            if isinstance(record["snapshot"], str):
                record["snapshot"] = json.loads(record["snapshot"])
            for item in expand(record):
                out.append(item | {"run_id": _uuid(record["run_id"])})
        return out

    async def audit_count(self, kind: str) -> int:
        """How many resources of ``kind`` the audit records as deleted."""
        return int(
            await self.value(
                "SELECT coalesce(sum(resource_count), 0) FROM cleanup_audit WHERE kind = :k", k=kind
            )
        )

    async def deleted_ids(self, kind: str) -> list[str]:
        """Every resource id the audit says was deleted, once per deletion (results expanded)."""
        ids: list[str] = []
        for item in await self.audit(kind):
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


async def whole(db: Db, ids: list[uuid.UUID], results_per_bot: int) -> int:
    """Each seeded bot is intact with all its results, or gone with none and one audit row."""
    present = await db.bot_ids()
    per_bot = await db.results_per_bot()
    for bot in map(str, ids):
        assert per_bot.get(bot, 0) == (results_per_bot if bot in present else 0), bot
    gone = {str(b) for b in ids} - present
    assert set(await db.deleted_ids("bots")) == gone
    return len(gone)


def _plain(value: Any) -> Any:
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


def _uuid(value: Any) -> str:
    return str(uuid.UUID(str(value))) if not isinstance(value, uuid.UUID) else str(value)


def _bind_uuid(value: str, postgres: bool) -> Any:
    # SQLite stores Uuid() as 32 hex digits; PostgreSQL takes a uuid.
    return uuid.UUID(value) if postgres else uuid.UUID(value).hex


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


# --- the engines, read with the docker SDK -------------------------------------------------------
def containers_of(client: Any, instance: str) -> dict[str, dict[str, Any]]:
    """Every container carrying ``botfleet.instance=<instance>`` (any state): id → facts."""
    rows = client.api.containers(all=True, filters={"label": f"botfleet.instance={instance}"})
    return {r["Id"]: {"name": r["Names"][0].lstrip("/"), "state": r["State"]} for r in rows}


def container_state(client: Any, container_id: str) -> str | None:
    from docker.errors import NotFound

    try:
        return str(client.api.inspect_container(container_id)["State"]["Status"])
    except NotFound:
        return None


def container_digest(client: Any, ids: Iterable[str]) -> str:
    """A hash of what the engine says about these containers (state, labels, name, exit)."""
    h = hashlib.sha256()
    for cid in sorted(ids):
        state = container_state(client, cid)
        if state is None:
            h.update(f"{cid}:gone".encode())
            continue
        raw = client.api.inspect_container(cid)
        facts = [cid, raw["Name"], state, raw["State"]["FinishedAt"], raw["Config"]["Labels"]]
        h.update(json.dumps(facts, sort_keys=True).encode())
    return h.hexdigest()


DESTRUCTIVE = frozenset({"destroy", "die", "kill", "stop"})


class EventLog:
    """The engine's container events, read live by a thread of its own from ``start()`` on.

    Live, because the engine keeps only its last 256 events for a ``since`` query, and other
    tests share it. ``stop()`` first waits for a marker event of its own: every event before
    it has been read by then (the stream is ordered).
    """

    def __init__(self, image: str) -> None:
        import docker

        self.image = image
        self.client = docker.from_env()
        self.events: list[dict[str, Any]] = []
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> EventLog:
        self._stream = self.client.events(decode=True, filters={"type": "container"})
        self._thread = threading.Thread(target=self._read, name="event-log", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when stop() closes it
            for event in self._stream:
                self.events.append(event)

    def stop(self, timeout: float = 30) -> None:
        marker = self.client.containers.create(self.image, command=["true"], network_mode="none")
        marker.remove()
        deadline = time.monotonic() + timeout
        while not any(_id(e) == marker.id and _action(e) == "destroy" for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError("the engine's event stream fell silent")
            time.sleep(0.02)
        self.close()

    def close(self) -> None:
        """End the stream (at once; ``stop()`` waits for the last events first). Idempotent."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.client.close()

    def actions(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        """(container id, action) of every event recorded for ``ids``, in order."""
        wanted = set(ids)
        return [(_id(e), _action(e)) for e in list(self.events) if _id(e) in wanted]


def _id(event: dict[str, Any]) -> str:
    return str(event.get("id") or event.get("Actor", {}).get("ID") or "")


def _action(event: dict[str, Any]) -> str:
    return str(event.get("Action") or event.get("status") or "")


def named_container(containers: Any, name: str, labels: dict[str, str] | None = None) -> str:
    """A never-started container with a name of the test's choosing (``containers`` is
    tests/cleanup/support.py's factory, which removes it at teardown)."""
    made = containers.client.containers.create(
        containers.image, command=["true"], name=name, labels=labels or {}, network_mode="none"
    )
    containers.ids.append(made.id)
    return str(made.id)
