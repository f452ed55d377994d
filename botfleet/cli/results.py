"""`botfleet results export`: every result matching a filter, to stdout, as NDJSON, CSV or
Parquet.

NDJSON and CSV are the server's bytes as they come (``GET /results/export``); Parquet is
written here from the server's NDJSON, a row group per ``PARQUET_ROWS`` rows, with pyarrow (the
Apache Arrow project's own library; ``pip install 'botfleet[parquet]'``). Memory stays flat
either way. A progress line (rows, rows/s) goes to stderr when stderr is a terminal, and
nothing extra when it is not.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import typer
from rich.console import Console
from rich.progress import (
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from botfleet.cli.bots import ServerOption, _client
from botfleet.cli.client import ClientError
from botfleet.cli.common import EXIT_CONFIG, fail

app = typer.Typer(no_args_is_help=True, help="Take results out of botfleet.")
FORMATS = ("ndjson", "csv", "parquet")
PARQUET_ROWS = 50_000
# Seconds to wait for the next chunk of an export (a big label filter may scan a while).
READ_TIMEOUT = 300.0


class _Count:
    """Rows written so far, shown by the progress bar (if any)."""

    def __init__(self, progress: Progress | None) -> None:
        self.rows = 0
        self._progress = progress
        self._task = progress.add_task("export", total=None) if progress else None

    def add(self, rows: int) -> None:
        self.rows += rows
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.rows)


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} rows/s", style="progress.data.speed")


def _on_terminal() -> bool:
    """Whether a person watches stderr (a progress line), or it goes to a file or a pipe."""
    return sys.stderr.isatty()


def _progress() -> Progress | None:
    if not _on_terminal():
        return None
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.completed:,} rows"),
        _Rate(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines out of chunks cut anywhere."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        yield from whole
    if rest:
        yield rest


def _write_raw(chunks: Iterator[bytes], out: IO[bytes], count: _Count, fmt: str) -> None:
    header = fmt == "csv"
    for chunk in chunks:
        out.write(chunk)
        rows = chunk.count(b"\n")
        if header and rows:
            rows, header = rows - 1, False
        count.add(rows)


def _write_parquet(chunks: Iterator[bytes], out: IO[bytes], count: _Count) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        fail("--format parquet needs pyarrow: pip install 'botfleet[parquet]'", EXIT_CONFIG)
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("bot_id", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("data", pa.string()),  # the JSON value as JSON text: results have no one shape
        ]
    )
    batch: dict[str, list[Any]] = {name: [] for name in schema.names}

    def flush(writer: Any) -> None:
        if batch["id"]:
            created = pa.array(batch["created_at"], pa.string())
            arrays = [
                pa.array(batch["id"], pa.int64()),
                pa.array(batch["bot_id"], pa.string()),
                created.cast(pa.timestamp("us", tz="UTC")),
                pa.array(batch["data"], pa.string()),
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            count.add(len(batch["id"]))
            for column in batch.values():
                column.clear()

    with pq.ParquetWriter(out, schema) as writer:
        for line in _lines(chunks):
            row = json.loads(line)
            batch["id"].append(row["id"])
            batch["bot_id"].append(row["bot_id"])
            batch["created_at"].append(row["created_at"])
            batch["data"].append(json.dumps(row["data"], separators=(",", ":")))
            if len(batch["id"]) >= PARQUET_ROWS:
                flush(writer)
        flush(writer)


@app.command("export")
def export(
    fmt: str = typer.Option("ndjson", "--format", "-f", help="ndjson, csv or parquet."),
    label: list[str] = typer.Option([], "--label", "-l", help="KEY=VALUE, repeatable."),
    since: str | None = typer.Option(None, "--since", help="Created at or after (RFC 3339)."),
    until: str | None = typer.Option(None, "--until", help="Created before (RFC 3339)."),
    server: str | None = ServerOption,
) -> None:
    """Write every matching result to stdout (redirect it: `> results.ndjson`)."""
    if fmt not in FORMATS:
        fail(f"--format accepts {', '.join(FORMATS)}, got {fmt!r}")
    out = sys.stdout.buffer
    if fmt == "parquet" and sys.stdout.isatty():
        fail("Parquet is binary: redirect stdout to a file (> results.parquet)")
    params = {
        "format": "ndjson" if fmt == "parquet" else fmt,
        "label": label,
        "since": since,
        "until": until,
    }
    progress = _progress()
    count = _Count(progress)
    client = _client(server)
    try:
        with (
            progress if progress is not None else contextlib.nullcontext(),
            client.stream("/results/export", params=params, timeout=READ_TIMEOUT) as answer,
        ):
            chunks = answer.iter_bytes()
            if fmt == "parquet":
                _write_parquet(chunks, out, count)
            else:
                _write_raw(chunks, out, count, fmt)
            out.flush()
    except ClientError as exc:
        fail(str(exc), exc.exit_code)
    except BrokenPipeError:
        raise typer.Exit(141) from None  # `| head`: the reader left
    if progress is not None:
        Console(stderr=True).print(f"{count.rows:,} rows")
