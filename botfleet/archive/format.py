"""The archive's format, pure: file names, the batch header, one line per purged row.

A run's batches live in ``<CLEANUP_ARCHIVE_DIR>/<run id>/``, one gzip-compressed JSON Lines file
per batch, named from the stage, the walk and the batch's number in it (:func:`batch_name`), so
a batch written again (a retry) replaces its own file and never adds a second one. The first
line describes the batch (``"table": "batch"``); every other line is one deleted row,
``{"table": "bots" | "results", "row": {every column}}`` (bots add the ``reason`` that made them
due). A run that ended leaves ``manifest.json`` beside its files. See docs/archive.md.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FORMAT_VERSION = 1
SUFFIX = ".jsonl.gz"
MANIFEST = "manifest.json"
TABLE_BATCH = "batch"
TABLE_BOTS = "bots"
TABLE_RESULTS = "results"
# Where a batch record of the audit trail names its archive file.
AUDIT_KEY = "archive"
_NAME = re.compile(r"^[a-z_]+-\d{2}-\d{6}\.jsonl\.gz$")


def batch_name(kind: str, walk: int, seq: int) -> str:
    """``bots-00-000001.jsonl.gz``: the ``seq``-th batch of walk ``walk`` of stage ``kind``."""
    return f"{kind}-{walk:02d}-{seq:06d}{SUFFIX}"


def is_batch_name(name: str) -> bool:
    return bool(_NAME.match(name))


def is_run_dir_name(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


@dataclass(frozen=True)
class BatchBody:
    """What one batch deleted, ready to archive: blocks of JSON lines (each block one or more
    lines without the final newline — PostgreSQL hands them over aggregated), rows per table,
    and what explains the batch (its reason, for a batch of results)."""

    blocks: Sequence[str | bytes]  # PostgreSQL hands UTF-8 bytes over: no decoding here
    counts: Mapping[str, int]
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ArchivedFile:
    """One committed batch file: its name, rows per table, size on disk."""

    name: str
    counts: dict[str, int]
    bytes: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "rows": dict(self.counts), "bytes": self.bytes}


def header(
    *, run_id: uuid.UUID, kind: str, name: str, actor: str, at: datetime, body: BatchBody
) -> str:
    """The batch's first line: which run, stage and actor, when, how many rows of each table."""
    return json.dumps(
        {
            "table": TABLE_BATCH,
            "format": FORMAT_VERSION,
            "run_id": str(run_id),
            "kind": kind,
            "name": name,
            "actor": actor,
            "archived_at": at.isoformat(),
            "rows": dict(body.counts),
            **body.context,
        },
        separators=(",", ":"),
    )


def row_line(table: str, row: Mapping[str, Any], **extra: Any) -> str:
    """One deleted row as a line (SQLite's road; PostgreSQL's statement builds the same)."""
    return json.dumps(
        {"table": table, **extra, "row": dict(row)},
        separators=(",", ":"),
        default=str,
        ensure_ascii=False,
    )


def parse_line(line: str) -> dict[str, Any]:
    value = json.loads(line)
    if not isinstance(value, dict) or "table" not in value:
        raise ValueError(f"not an archive line: {line[:80]!r}")
    return value
