"""Bring the schema up to date, under a lock so that replicas starting together do not race.

Alembic (with Mako: a good part of an idle server's memory, for as long as it runs —
BENCHMARKS.md, "Issue 20, second round") is imported only when the schema is behind: a server
starting on a current schema finds so with one query against ``alembic_version`` and never
loads it (``SCHEMA_HEAD``; a test holds it to Alembic's head).
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.config import Settings
from botfleet.store.session import create_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest migration's revision: what a current schema's alembic_version holds.
SCHEMA_HEAD = "0008"


def alembic_config(settings: Settings) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["settings"] = settings
    return cfg


@contextmanager
def _file_lock(settings: Settings) -> Iterator[None]:
    """SQLite has no advisory locks: serialise migrating processes with flock on a side file."""
    path = settings.sqlite_path
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.migrate.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_sync(settings: Settings, revision: str = "head") -> None:
    from alembic import command

    with _file_lock(settings):
        command.upgrade(alembic_config(settings), revision)


async def upgrade(settings: Settings, revision: str = "head") -> None:
    """Upgrade to ``revision``; to the head only if the schema is not there already."""
    if revision == "head" and await schema_is_current(settings):
        return
    # Alembic's env.py runs its own event loop, so it must not share ours.
    await asyncio.to_thread(upgrade_sync, settings, revision)


async def schema_is_current(settings: Settings) -> bool:
    """Whether the store's schema is at ``SCHEMA_HEAD`` (no table yet: it is not)."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except DBAPIError:
        return False
    finally:
        await engine.dispose()
    return [row[0] for row in versions] == [SCHEMA_HEAD]


def head_revision(settings: Settings) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
