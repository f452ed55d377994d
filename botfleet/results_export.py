"""Results out of the store as NDJSON or CSV, streamed: constant memory whatever the size.

On PostgreSQL the rows leave the database through ``COPY (SELECT …) TO STDOUT``: no round trip
per batch of rows, and the server renders every line itself (string concatenation, cheaper for
it than ``json_build_object``), so Python only hands bytes on. asyncpg's COPY stops reading the
socket while a chunk waits for the client, and the chunks go to the response through a queue of
``QUEUE_CHUNKS``: what is in flight is bounded, whatever the export's size. Each record is one
CSV row of COPY's: for CSV the four columns; for NDJSON the whole line as one column, with a
delimiter and a quote character (``\x01``, ``\x02``) that JSON text never holds raw (it
escapes every control character), so COPY writes it as it is — its text format would double
every backslash of the JSON.

SQLite gets the same records from a server-side cursor (sqlite3's own stepping), a partition of
``PARTITION_ROWS`` rows at a time, written by a plain loop over typed rows; a test holds the two
to the same parsed values. On PostgreSQL a cursor, even one fetching ready-made lines, did less
well than COPY (BENCHMARKS.md, "Results export").

Columns, in this order: ``id``, ``bot_id``, ``created_at`` (RFC 3339, UTC), ``data`` (the JSON
value, as JSON text in a CSV field). Lines end with ``\n`` (COPY's CSV knows no other ending).
"""

from __future__ import annotations

import asyncio
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
# SQLite: rows per fetch from the cursor and per chunk sent (~100-200 bytes a row).
PARTITION_ROWS = 2000
# PostgreSQL: COPY's chunks (what one read of the socket brought) waiting for the client; sent
# joined, as many as are there.
QUEUE_CHUNKS = 16


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
    return (",".join(COLUMNS) + "\n").encode()


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
    """COPY's chunks as they come. The COPY runs in a task of its own, which owns its
    connection from checkout to return: when the client goes away, the response's cancellation
    ends this generator, which only cancels that task — the connection's cleanup is the task's,
    never interrupted by the response's cancel scope. The task's last item says how it ended."""
    sql, args = postgres_sql(flt, fmt)
    chunks: asyncio.Queue[bytes | _End] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    copying = asyncio.ensure_future(_copy(db, sql, args, _COPY_OPTIONS[fmt], chunks))
    _COPIES.add(copying)
    copying.add_done_callback(_COPIES.discard)
    try:
        while True:
            item = await chunks.get()
            ready: list[bytes] = []
            # With whatever else is queued: fewer, larger writes to the client.
            while isinstance(item, bytes):
                ready.append(item)
                if chunks.empty():
                    break
                item = chunks.get_nowait()
            if ready:
                yield b"".join(ready) if len(ready) > 1 else ready[0]
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
    finally:
        copying.cancel()  # a no-op once it has ended


@dataclass(frozen=True)
class _End:
    """The COPY's last item: it ended, with this error or none."""

    error: BaseException | None = None


# COPYs in flight (the loop keeps only weak references to tasks).
_COPIES: set[asyncio.Future[None]] = set()


async def _copy(
    db: AsyncEngine,
    sql: str,
    args: Sequence[Any],
    options: Mapping[str, str],
    chunks: asyncio.Queue[bytes | _End],
) -> None:
    async def keep(chunk: bytearray) -> None:
        await chunks.put(bytes(chunk))  # asyncpg's buffer, as the response sends it

    error: BaseException | None = None
    try:
        async with db.connect() as conn:
            raw = await conn.get_raw_connection()
            pg: Any = raw.driver_connection
            try:
                # to_json renders a time in the session's zone: make that UTC.
                await pg.execute("BEGIN READ ONLY; SET LOCAL TIME ZONE 'UTC'")
                await pg.copy_from_query(sql, *args, output=keep, **options)
                await pg.execute("COMMIT")
            except BaseException:
                # Cut short (the client went away) or failed: the connection may still be in
                # its COPY, where no rollback can be sent, so it never goes back to the pool
                # (where the next request's checkout failed on it).
                await conn.invalidate()
                raise
    except asyncio.CancelledError:
        raise  # the generator cancelled it: nobody reads on
    except Exception as exc:
        error = exc
    await chunks.put(_End(error))


# Each record as PostgreSQL renders it (``r`` is results). NDJSON: the line is one column (its
# newline is COPY's): jsonb's text has no raw newline or control character. CSV: the time is
# to_json's string without its quotes (cheaper than to_char), and COPY quotes what needs it.
_PG_RECORDS = {
    NDJSON: """'{"id":' || r.id || ',"bot_id":"' || r.bot_id || '","created_at":'"""
    """ || to_json(r.created_at)::text || ',"data":' || coalesce(r.data::text, 'null') || '}'""",
    CSV: """r.id, r.bot_id, btrim(to_json(r.created_at)::text, '"'),"""
    """ coalesce(r.data::text, 'null')""",
}
_COPY_OPTIONS: dict[str, dict[str, str]] = {
    NDJSON: {"format": "csv", "delimiter": "\x01", "quote": "\x02"},
    CSV: {"format": "csv"},
}


def postgres_sql(flt: ExportFilter, fmt: str) -> tuple[str, list[Any]]:
    """The export's query for PostgreSQL's COPY with its positional arguments ($1, $2, …)."""
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
    sql = f"SELECT {_PG_RECORDS[fmt]} FROM results r{join}{condition} ORDER BY r.id"
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
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows((row[0], row[1], row[2].isoformat(), _json_text(row[3])) for row in rows)
    return out.getvalue().encode()


def _json_text(value: str | None) -> str:
    """The stored JSON text as one line (SQLite keeps what ``json.dumps`` wrote: no newline)."""
    if value is None:
        return "null"
    return value if "\n" not in value else json.dumps(json.loads(value))
