"""Alembic environment: the URL comes from botfleet's settings, never from an ini file."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from botfleet.config import load_settings
from botfleet.constants import MIGRATION_LOCK_KEY
from botfleet.store.models import Base
from botfleet.store.session import create_engine

config = context.config
target_metadata = Base.metadata


def _do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        user_module_prefix="botfleet.store.models.",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two replicas starting together: the second waits here, then finds nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_async() -> None:
    settings = config.attributes.get("settings") or load_settings()
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `botfleet db upgrade`")
connection = config.attributes.get("connection")
if connection is not None:
    _do_run_migrations(connection)
else:
    asyncio.run(_run_async())
