"""Fixtures of the reliability scenarios: a PostgreSQL store of the test's own (truncated), and the
factories of tests/support (rows straight into the store, containers straight into the engine,
both cleaned up at teardown)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from botfleet.config import Settings
from tests.conftest import TABLES, _pg_exec, make_settings
from tests.support.containers import containers
from tests.support.store import Store

__all__ = ["containers"]


@pytest.fixture
def pg_database(pg_url: str) -> str:
    """The session's migrated PostgreSQL database, emptied for this test."""
    _pg_exec(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY", pg_url)
    return pg_url


@pytest.fixture
def pg_factory(pg_database: str, instance: str) -> Callable[..., Settings]:
    """Settings on PostgreSQL for this test's instance, with ``overrides``."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": pg_database, "botfleet_instance": instance}
        values.update(overrides)
        return make_settings(**values)

    return factory


@pytest.fixture
async def pg_store(pg_factory: Callable[..., Settings]) -> AsyncIterator[Store]:
    store = Store(pg_factory())
    try:
        yield store
    finally:
        await store.close()
