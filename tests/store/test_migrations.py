"""Migrations: upgrade to head from empty on both backends; models and migrations agree."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    insert,
    inspect,
    select,
    text,
)

from botfleet.store.migrate import alembic_config, upgrade_sync
from botfleet.store.models import Base, BigIntPK, CleanupAudit, JSONType, UTCDateTime
from botfleet.store.session import create_engine
from tests.conftest import make_settings

EXPECTED_COLUMNS = {
    "bots": {
        "id",
        "name",
        "image",
        "command",
        "env",
        "labels",
        "status",
        "container_id",
        "engine",
        "created_at",
        "updated_at",
        "deleted_at",
    },
    "results": {"id", "bot_id", "created_at", "data"},
    "cleanup_runs": {
        "id",
        "trigger",
        "actor",
        "dry_run",
        "status",
        "started_at",
        "finished_at",
        "report",
    },
    "cleanup_audit": {"run_id", "kind", "resource_id", "reason", "actor", "snapshot"},
}


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fresh.db"
    url: str = request.getfixturevalue("fresh_pg_database")
    return url


def _inspect(url: str) -> tuple[dict[str, set[str]], dict[str, list[dict[str, Any]]], list[Any]]:
    settings = make_settings(database_url=url)

    async def _run() -> tuple[dict[str, set[str]], dict[str, list[dict[str, Any]]], list[Any]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:

                def _sync(sync_conn: Any) -> Any:
                    insp = inspect(sync_conn)
                    tables = insp.get_table_names()
                    cols = {t: {c["name"] for c in insp.get_columns(t)} for t in tables}
                    idx = {t: insp.get_indexes(t) for t in insp.get_table_names()}
                    diff = compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)
                    return cols, idx, diff

                return await conn.run_sync(_sync)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def test_db_upgrade_creates_the_schema(empty_database: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database, "ADMIN_TOKEN": "x" * 40}
    proc = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    columns, indexes, diff = _inspect(empty_database)
    for table, expected in EXPECTED_COLUMNS.items():
        assert expected <= columns[table], (table, expected - columns[table])
    names = {i["name"] for i in indexes["bots"]}
    assert {"ix_bots_deleted_at", "uq_bots_name_live"} <= names
    assert {"ix_results_bot_id", "ix_results_created_at"} <= {i["name"] for i in indexes["results"]}
    # The models match the migrations: autogenerate would produce nothing.
    assert diff == []
    # Running it again is a no-op (and takes the lock without deadlocking).
    again = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr


def test_concurrent_upgrades_do_not_race(empty_database: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database, "ADMIN_TOKEN": "x" * 40}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "botfleet.cli", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    columns, _idx, diff = _inspect(empty_database)
    assert "bots" in columns and diff == []


def test_upgrade_removes_env_from_purged_bots_audit_snapshots(empty_database: str) -> None:
    """Revision 0003: audit records written before it held a purged bot's env (secrets); after
    the upgrade they do not, and everything else in them is kept."""
    settings = make_settings(database_url=empty_database)
    upgrade_sync(settings, "0002")
    bot_snapshot = {"name": "old-bot", "env": {"API_KEY": "s3cret"}, "results_deleted": 3}
    other_snapshot = {"ids": [1, 2], "env": "not a bot's: left alone"}

    async def write_then_read(upgrade: bool) -> dict[str, Any]:
        engine = create_engine(settings)
        try:
            if not upgrade:
                async with engine.begin() as conn:
                    await conn.execute(
                        insert(OLD_AUDIT),
                        [
                            _audit_row("bots", "b1", bot_snapshot),
                            _audit_row("orphaned_results", "r1", other_snapshot),
                        ],
                    )
                return {}
            async with engine.connect() as conn:
                rows = (await conn.execute(select(CleanupAudit.kind, CleanupAudit.snapshot))).all()
                return {kind: snapshot for kind, snapshot in rows}
        finally:
            await engine.dispose()

    asyncio.run(write_then_read(False))
    upgrade_sync(settings)
    after = asyncio.run(write_then_read(True))
    assert after["bots"] == {"name": "old-bot", "results_deleted": 3}
    assert after["orphaned_results"] == other_snapshot


# cleanup_audit as revisions 0001-0003 left it: one row per purged bot, jsonb snapshots.
OLD_AUDIT = Table(
    "cleanup_audit",
    MetaData(),
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("run_id", Uuid),
    Column("kind", String(32)),
    Column("resource_id", String(128)),
    Column("engine", String(255)),
    Column("reason", Text),
    Column("actor", String(200)),
    Column("snapshot", JSONType),
    Column("deleted_at", UTCDateTime),
)


def test_0004_reads_old_records_as_before_and_downgrades_batches_to_records_per_bot(
    empty_database: str,
) -> None:
    """Revision 0004: records written before it keep their content and count one resource
    each (a batch of results: its count); a batch of bots written after it is turned back into
    one record per bot by the downgrade, nothing lost."""
    settings = make_settings(database_url=empty_database)
    upgrade_sync(settings, "0003")
    per_bot = {"name": "old-bot", "labels": {"team": "a"}, "results_deleted": 3}
    results = {"count": 2, "ids": [7, 9]}
    batch = {
        "count": 2,
        "bots": [
            {"id": "00000000-0000-0000-0000-00000000000a", "name": "x", "results_deleted": 1},
            {"id": "00000000-0000-0000-0000-00000000000b", "name": "y", "results_deleted": 0},
        ],
    }

    async def write(table: Any, rows: list[dict[str, Any]]) -> None:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(table), rows)
        finally:
            await engine.dispose()

    async def read(table: Any, *columns: str) -> list[tuple[Any, ...]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                query = select(*(table.c[c] for c in columns)).order_by(table.c.id)
                return [tuple(r) for r in await conn.execute(query)]
        finally:
            await engine.dispose()

    old_rows = [_audit_row("bots", "b1", per_bot), _audit_row("results", "7..9", results)]
    asyncio.run(write(OLD_AUDIT, old_rows))
    upgrade_sync(settings)
    audit = CleanupAudit.__table__
    assert asyncio.run(read(audit, "resource_id", "resource_count", "snapshot")) == [
        ("b1", 1, per_bot),
        ("7..9", 2, results),
    ]
    asyncio.run(write(audit, [_audit_row("bots", "a..b", batch) | {"resource_count": 2}]))
    if empty_database.startswith("postgresql"):  # Debian's server is built with lz4
        compression = asyncio.run(
            _scalar(
                settings,
                "SELECT attcompression::text FROM pg_attribute"
                " WHERE attrelid = 'cleanup_audit'::regclass AND attname = 'snapshot'",
            )
        )
        assert compression == "l"

    command.downgrade(alembic_config(settings), "0003")
    rows = asyncio.run(read(OLD_AUDIT, "kind", "resource_id", "snapshot"))
    assert rows == [
        ("bots", "b1", per_bot),
        ("results", "7..9", results),
        ("bots", "00000000-0000-0000-0000-00000000000a", {"name": "x", "results_deleted": 1}),
        ("bots", "00000000-0000-0000-0000-00000000000b", {"name": "y", "results_deleted": 0}),
    ]
    upgrade_sync(settings)  # and up again
    assert _inspect(empty_database)[2] == []


async def _scalar(settings: Any, sql: str) -> Any:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


def _audit_row(kind: str, resource_id: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": uuid.uuid4(),
        "kind": kind,
        "resource_id": resource_id,
        "reason": "test",
        "actor": "test",
        "snapshot": snapshot,
        "deleted_at": datetime.now(UTC),
    }


def test_the_schema_head_the_server_checks_is_alembics() -> None:
    """``SCHEMA_HEAD`` spares a server on a current schema Alembic's import; a new migration
    must move it, or every start would run Alembic for nothing (or skip a migration)."""
    from botfleet.store.migrate import SCHEMA_HEAD, head_revision

    assert head_revision(make_settings(database_url="sqlite:///unused.db")) == SCHEMA_HEAD
