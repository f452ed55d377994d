"""Archive lines as PostgreSQL renders them in a batch's statement (pure: SQL text).

A deleted row becomes the JSON object of every column, spelled out by concatenation: each column
rendered as its type needs (a number or a JSON column as its text, a uuid quoted, anything else
through ``to_json``), ``null`` for NULL. ``row_to_json`` and ``json_build_object`` give the same
JSON but look up every column's type again for every row, and a wrapper object re-copies the row;
spelled out, the lines cost the batch about a third less (BENCHMARKS.md, Archive). The values are
those of ``row_to_json`` (tests/cleanup/test_archive_lines.py compares them), so readers see the
format of docs/archive.md whichever way a line was made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, Uuid
from sqlalchemy.sql.elements import KeyedColumnElement

Columns = Sequence[KeyedColumnElement[Any]]


def _value(ref: str, column: KeyedColumnElement[Any]) -> str:
    """``ref`` (a column of a row alias) as JSON text; NULL stays NULL."""
    kind = column.type
    if isinstance(kind, Uuid):
        return f"""'"' || {ref}::text || '"'"""
    if isinstance(kind, Integer | Boolean | JSON):  # JSON: jsonb's or json's own text
        return f"{ref}::text"
    return f"to_json({ref})::text"  # strings escaped, times in ISO 8601 with their offset


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def row_object(alias: str, columns: Columns) -> str:
    """The SQL expression of ``{"column": value, …}`` for every one of ``columns`` of ``alias``."""
    parts = []
    for i, column in enumerate(columns):
        key = ("{" if i == 0 else ",") + json.dumps(column.key) + ":"
        ref = f'{alias}."{column.key}"'
        parts.append(f"{_literal(key)} || coalesce({_value(ref, column)}, 'null')")
    return " || ".join(parts) + " || '}'"


def line(table: str, alias: str, columns: Columns, **extra: str) -> str:
    """One archive line: ``{"table": …, <extra keys: SQL expressions already JSON>, "row": …}``
    (:func:`botfleet.archive.format.row_line` makes the same in Python)."""
    head = "{" + json.dumps("table") + ":" + json.dumps(table)
    sql = _literal(head)
    for key, expression in extra.items():
        sql += f" || {_literal(',' + json.dumps(key) + ':')} || {expression}"
    row = row_object(alias, columns)
    return f"{sql} || {_literal(',' + json.dumps('row') + ':')} || {row} || '}}'"


# A batch's lines reach the worker in rows of at most this many lines (≈ 75 kB), not as one
# row: one string_agg of a whole batch, a string of megabytes handed over as one row, costs more
# per byte than rows of kilobytes, the more so the larger the batch (BENCHMARKS.md, Archive).
CHUNK_LINES = 256


def with_lines(summary: str, parts: Sequence[tuple[str, str]]) -> str:
    """The final ``SELECT`` of a batch's statement: ``summary``'s columns (one row of counts) on
    every row, and ``lines`` — UTF-8 bytes (``bytea``: no decoding and encoding again on the way
    to the file), the lines of each ``(expression, source)`` part joined by newlines, at most
    :data:`CHUNK_LINES` a row — in the parts' order; one row, ``lines`` NULL, when none."""
    each = " UNION ALL ".join(
        f"SELECT {i} AS part, {expression} AS line FROM {source}"
        for i, (expression, source) in enumerate(parts)
    )
    return f"""SELECT s.*, l.lines FROM ({summary}) s LEFT JOIN (
    SELECT part, n / {CHUNK_LINES} AS chunk, convert_to(string_agg(line, E'\\n'), 'UTF8') AS lines
    FROM (SELECT part, line, row_number() OVER () AS n FROM ({each}) u) numbered
    GROUP BY part, n / {CHUNK_LINES}
) l ON true
ORDER BY l.part, l.chunk"""


def blocks(rows: Sequence[Any]) -> list[bytes]:
    """The lines of a statement's rows (:func:`with_lines`), in order."""
    return [r.lines for r in rows if r.lines is not None]


def json_text(expression: str) -> str:
    """Any SQL value as JSON text (for the extra keys of :func:`line`)."""
    return f"coalesce(to_json({expression})::text, 'null')"
