"""How much room the store's tables take: the results budget measures ``results`` with it.

PostgreSQL: ``pg_total_relation_size`` (table, indexes and TOAST). SQLite: the pages of the table
and its indexes from the ``dbstat`` virtual table; a build without it falls back to the file's
pages shared out by rows. Neither shrinks when rows are deleted (PostgreSQL reuses the space
after VACUUM, SQLite keeps free pages): figures after a deletion are estimated from the average
row, and say so.
"""

from __future__ import annotations

from sqlalchemy import bindparam

from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.sql import Runner, scalar


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
