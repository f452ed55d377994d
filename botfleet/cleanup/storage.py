"""How much room the store takes, and how much a real run's database stages recovered.

``table_bytes``: the results budget measures ``results`` with it. PostgreSQL:
``pg_total_relation_size`` (table, indexes and TOAST). SQLite: the pages of the table and its
indexes from the ``dbstat`` virtual table; a build without it falls back to the file's pages.

Storage recovered (docs/operations.md, "Storage recovered"), measured, never estimated:

- SQLite: the store's pages in use (``page_count - freelist_count``, times ``page_size``) before
  and after each stage; the difference is what the stage handed back to the freelist (net of
  the pages its own audit records took), exact to the page.
- PostgreSQL: a DELETE frees nothing at once (VACUUM makes the space reusable later), so relation
  sizes before and after would say 0. Each batch's own statement sums the deleted rows' heap
  tuples instead (:func:`tuple_bytes`: ``pg_column_size`` of the whole row, the tuple's length
  as ``pgstattuple`` counts it, aligned as on the page): the room VACUUM makes reusable in the
  tables. Index entries and out-of-line TOAST are not counted. The relation sizes before and
  after are reported beside it (what was returned to the operating system: usually nothing
  until a VACUUM truncates or a VACUUM FULL rewrites).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import bindparam

from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.sql import Runner, scalar
from botfleet.constants import (
    KIND_BOTS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
)
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

# The tables each database stage deletes from (idle_bots soft-deletes: it frees nothing).
STAGE_TABLES: dict[str, tuple[str, ...]] = {
    KIND_BOTS: ("bots", "results", "bot_events"),
    KIND_RESULTS: ("results",),
    KIND_ORPHANED_RESULTS: ("results",),
    KIND_RESULTS_OVER_QUOTA: ("results",),
}


def tuple_bytes(alias: str) -> str:
    """PostgreSQL: a deleted row's heap bytes, for a ``RETURNING`` list (MAXALIGN of its
    tuple's length; the line pointer stays after VACUUM, so it is not counted)."""
    return f"(pg_column_size({alias}.*) + 7) / 8 * 8 AS freed"


def freed_sum(*ctes: str) -> str:
    """PostgreSQL: the bytes the ``RETURNING`` of :func:`tuple_bytes` summed over ``ctes``."""
    return " + ".join(f"(SELECT coalesce(sum(freed), 0) FROM {cte})" for cte in ctes)


async def table_bytes(runner: Runner, dialect: Dialect, table: str) -> int:
    """The bytes ``table`` takes with its indexes (``table`` is one of the store's names)."""
    if dialect.postgres:
        return await scalar(
            runner, "SELECT pg_total_relation_size(CAST(:t AS regclass))", [bindparam("t", table)]
        )
    try:
        return await scalar(
            runner,
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN"
            " (SELECT name FROM sqlite_master WHERE tbl_name = :t)",
            [bindparam("t", table)],
        )
    except Exception:  # a SQLite without dbstat: the file's pages, shared out by rows
        pages = await scalar(
            runner, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
        )
        return pages


async def store_bytes(runner: Runner, dialect: Dialect, tables: Sequence[str]) -> int:
    """PostgreSQL: the bytes ``tables`` take on disk (with indexes and TOAST). SQLite: the
    pages in use in the whole file (a deletion frees pages to the freelist, not per table)."""
    if dialect.postgres:
        total = 0
        for table in tables:
            total += await table_bytes(runner, dialect, table)
        return total
    return await scalar(
        runner,
        "SELECT (page_count - freelist_count) * page_size"
        " FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
    )


async def stage_store_bytes(sessions: SessionFactory, dialect: Dialect, kind: str) -> int | None:
    """What :func:`store_bytes` says for ``kind``'s tables now; None for a stage that deletes
    no rows, or when it cannot be read (a measurement never fails a stage)."""
    tables = STAGE_TABLES.get(kind)
    if not tables:
        return None
    try:
        async with sessions() as session:
            return await store_bytes(session, dialect, tables)
    except Exception as exc:
        log.warning("measuring the store before or after %s failed: %s", kind, exc)
        return None
