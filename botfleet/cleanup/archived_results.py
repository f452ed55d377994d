"""What a stage that deletes results hands the archive (CLEANUP_ARCHIVE_DIR, safety rule 8):
the deleted rows as archive lines, and the file's name in the batch's audit. One place for the
results stages and the quota stage, so that both archive exactly the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam

from botfleet.archive.format import AUDIT_KEY, TABLE_RESULTS, BatchBody, row_line
from botfleet.cleanup.archive_lines import blocks, line, with_lines
from botfleet.cleanup.sql import jsonable
from botfleet.store.models import Result

RESULT_COLUMNS = list(Result.__table__.c)
EVERY_COLUMN = ", ".join(c.name for c in RESULT_COLUMNS)


def audit_names_file(archive: str | None) -> str:
    """The ``json_build_object`` pair (PostgreSQL) that puts the file's name in the audit."""
    return f"'{AUDIT_KEY}', CAST(:archive AS text), " if archive else ""


def archive_binds(archive: str | None) -> list[Any]:
    return [bindparam("archive", archive)] if archive else []


def final_select(summary: str, archive: str | None) -> str:
    """The batch statement's final ``SELECT`` (PostgreSQL): ``summary``, and with an archive the
    rows of its ``gone`` CTE (which returns ``r.*``) as archive lines, rendered by the database
    (:func:`botfleet.cleanup.archive_lines.with_lines`: one or more rows)."""
    if not archive:
        return summary
    return with_lines(summary, [(line(TABLE_RESULTS, "g", RESULT_COLUMNS), "gone g")])


def rendered_body(rows: Sequence[Any], reason: str) -> BatchBody:
    """The batch body of lines PostgreSQL rendered (:func:`final_select`)."""
    return BatchBody(blocks(rows), {TABLE_RESULTS: int(rows[0].rows)}, {"reason": reason})


def rows_body(rows: Sequence[Any], reason: str) -> BatchBody:
    """The batch body of deleted rows read back (``RETURNING`` :data:`EVERY_COLUMN`)."""
    lines = [row_line(TABLE_RESULTS, {k: jsonable(v) for k, v in r._mapping.items()}) for r in rows]
    return BatchBody(["\n".join(lines)], {TABLE_RESULTS: len(lines)}, {"reason": reason})


def audit_snapshot(ids: list[int], archive: str | None) -> dict[str, Any]:
    """The snapshot of a batch's audit record (SQLite): its ids, and the file that holds them."""
    return {"count": len(ids), **({AUDIT_KEY: archive} if archive else {}), "ids": ids}
