"""Results out of the store as NDJSON or CSV, streamed: constant memory whatever the size.

Rows come from a server-side cursor (SQLAlchemy ``stream`` with ``yield_per``: a named cursor
on PostgreSQL, sqlite3's own stepping on SQLite), a partition at a time, oldest first by id, and
leave as one chunk of bytes per partition, so nothing holds more than ``PARTITION_ROWS`` rows.

On PostgreSQL the server renders each line itself (string concatenation: cheaper for it than
``json_build_object``), read through asyncpg's own cursor, so Python only joins text: the
per-row cost in Python (row objects, type conversions, ``json.dumps``, ``isoformat``) is what
kept a generic loop far below PostgreSQL's own COPY (BENCHMARKS.md, "Results export"). SQLite
gets the same lines from a plain loop over typed rows; a test holds the two to the same parsed
values.

Columns, in this order: ``id``, ``bot_id``, ``created_at`` (RFC 3339, UTC), ``data`` (the JSON
value, as JSON text in a CSV field).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, cast, select
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.errors import BotNotFound, InvalidInput
from botfleet.store.models import Bot, Result

NDJSON, CSV = "ndjson", "csv"
FORMATS = (NDJSON, CSV)
MEDIA_TYPES = {NDJSON: "application/x-ndjson", CSV: "text/csv; charset=utf-8"}
COLUMNS = ("id", "bot_id", "created_at", "data")
# Rows per fetch from the cursor and per chunk sent: ~100-200 bytes a row, so a few hundred KB.
PARTITION_ROWS = 2000


@dataclass(frozen=True)
class ExportFilter:
    """Which results: one bot's, or those of bots carrying every label; by creation time
    (``since`` inclusive, ``until`` exclusive: ``until`` at or before ``since`` selects
    nothing, which is an answer, not an error). No label: orphaned results too."""

    bot_id: uuid.UUID | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None


def csv_header() -> bytes:
    return (",".join(COLUMNS) + "\r\n").encode()


async def export(db: AsyncEngine, flt: ExportFilter, fmt: str) -> AsyncIterator[bytes]:
    """The chunks of the export (a CSV starts with its header). The caller checks the bot
    beforehand (:func:`check_bot`), so that a 404 is still an answer of its own."""
    if fmt not in FORMATS:
        raise InvalidInput("format", f"accepts {', '.join(FORMATS)}")
    if fmt == CSV:
        yield csv_header()
    if db.dialect.name == "postgresql":
        async for chunk in _postgres(db, flt, fmt):
            yield chunk
        return
    async with db.connect() as conn:
        result = await conn.stream(_query(flt).execution_options(yield_per=PARTITION_ROWS))
        async for rows in result.partitions(PARTITION_ROWS):
            yield _render(rows, fmt)


async def _postgres(db: AsyncEngine, flt: ExportFilter, fmt: str) -> AsyncIterator[bytes]:
    """asyncpg's own cursor under the pooled connection: each fetch is one round trip of
    ``PARTITION_ROWS`` ready-made lines, and the next one is asked for while this one is sent,
    so PostgreSQL renders and Python sends at the same time (two cores, not one after the
    other)."""
    sql, args = postgres_sql(flt, fmt)
    async with db.connect() as conn:
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        async with pg.transaction(readonly=True):
            # to_json renders a time in the session's zone: make that UTC.
            await pg.execute("SET LOCAL TIME ZONE 'UTC'")
            cursor = await pg.cursor(sql, *args)
            pending = asyncio.ensure_future(cursor.fetch(PARTITION_ROWS))
            try:
                while True:
                    rows = await pending
                    if not rows:
                        return
                    pending = asyncio.ensure_future(cursor.fetch(PARTITION_ROWS))
                    yield "".join([row[0] for row in rows]).encode()
            finally:
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending


# Each line rendered by PostgreSQL (``r`` is results): JSON text needs no escaping into NDJSON
# (jsonb's text has no raw newline); in CSV its quotes are doubled, and the time is to_json's
# quoted string, which is a quoted CSV field as it stands.
_PG_LINES = {
    NDJSON: """'{"id":' || r.id || ',"bot_id":"' || r.bot_id || '","created_at":'"""
    """ || to_json(r.created_at)::text || ',"data":' || coalesce(r.data::text, 'null')"""
    """ || E'}\\n'""",
    CSV: """r.id || ',' || r.bot_id || ',' || to_json(r.created_at)::text || ',"'"""
    """ || replace(coalesce(r.data::text, 'null'), '"', '""') || E'"\\r\\n'""",
}


def postgres_sql(flt: ExportFilter, fmt: str) -> tuple[str, list[Any]]:
    """The export's statement for PostgreSQL with its positional arguments ($1, $2, …)."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = []
    join = ""
    if flt.bot_id is not None:
        where.append(f"r.bot_id = {arg(flt.bot_id)}")
    if flt.since is not None:
        where.append(f"r.created_at >= {arg(flt.since)}")
    if flt.until is not None:
        where.append(f"r.created_at < {arg(flt.until)}")
    if flt.labels:
        join = " JOIN bots b ON b.id = r.bot_id"
        for key, value in flt.labels.items():
            where.append(f"b.labels ->> {arg(key)} = {arg(value)}")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {_PG_LINES[fmt]} FROM results r{join}{condition} ORDER BY r.id"
    return sql, args


async def check_bot(db: AsyncEngine, bot_id: uuid.UUID) -> None:
    """:class:`BotNotFound` unless the bot has a row (deleted bots' results are exported)."""
    async with db.connect() as conn:
        if await conn.scalar(select(Bot.id).where(Bot.id == bot_id)) is None:
            raise BotNotFound(bot_id)


def _conditions(flt: ExportFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.bot_id is not None:
        conditions.append(Result.bot_id == flt.bot_id)
    if flt.since is not None:
        conditions.append(Result.created_at >= flt.since)
    if flt.until is not None:
        conditions.append(Result.created_at < flt.until)
    return conditions


def _query(flt: ExportFilter) -> Select[int, uuid.UUID, datetime, str]:
    """Typed columns for the generic (SQLite) path, oldest first."""
    query = select(Result.id, Result.bot_id, Result.created_at, cast(Result.data, Text)).where(
        *_conditions(flt)
    )
    if flt.labels:
        query = query.join(Bot, Bot.id == Result.bot_id).where(
            *(Bot.labels[key].as_string() == value for key, value in flt.labels.items())
        )
    return query.order_by(Result.id)


def _render(rows: Sequence[Any], fmt: str) -> bytes:
    """Typed rows (SQLite) as NDJSON lines or CSV records."""
    if fmt == NDJSON:
        return "".join(
            f'{{"id":{row[0]},"bot_id":"{row[1]}","created_at":"{row[2].isoformat()}",'
            f'"data":{_json_text(row[3])}}}\n'
            for row in rows
        ).encode()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerows((row[0], row[1], row[2].isoformat(), _json_text(row[3])) for row in rows)
    return out.getvalue().encode()


def _json_text(value: str | None) -> str:
    """The stored JSON text as one line (SQLite keeps what ``json.dumps`` wrote: no newline)."""
    if value is None:
        return "null"
    return value if "\n" not in value else json.dumps(json.loads(value))
