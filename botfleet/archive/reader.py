"""Reading the archive back: the runs it holds, a run's files, the rows of a file.

Only the standard library: an archive must stay readable by an operator's own tools too
(docs/archive.md shows DuckDB and ``zcat | jq``).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botfleet.archive.format import (
    MANIFEST,
    TABLE_BATCH,
    is_batch_name,
    is_run_dir_name,
    parse_line,
)
from botfleet.archive.writer import Archive
from botfleet.errors import BotfleetError


class ArchivedRunNotFound(BotfleetError):
    def __init__(self, run_id: str, root: Path) -> None:
        super().__init__(f"no archived run {run_id} under CLEANUP_ARCHIVE_DIR={root}")
        self.run_id = run_id


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every line of a batch file, the header (``"table": "batch"``) first."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield parse_line(line)


def file_summary(path: Path) -> dict[str, Any]:
    """A file's name, rows per table (from its header line) and size."""
    first = next(read_lines(path))
    if first.get("table") != TABLE_BATCH:
        raise ValueError(f"{path}: the first line is not a batch header")
    return {"name": path.name, "rows": dict(first["rows"]), "bytes": path.stat().st_size}


def _summary_or_unreadable(path: Path) -> dict[str, Any]:
    """A file of a run not yet sealed: one a crash cut short belongs to a batch that never
    committed (its rows are still in the store; the next run removes it), so it is shown, not
    fatal."""
    try:
        return file_summary(path)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        return {"name": path.name, "rows": {}, "bytes": path.stat().st_size, "unreadable": problem}


def run_path(archive: Archive, run_id: str) -> Path:
    path = archive.run_dir(run_id)
    if not path.is_dir():
        raise ArchivedRunNotFound(run_id, archive.root)
    return path


def batch_files(path: Path) -> list[Path]:
    """A run's batch files in name order (stage, walk, batch)."""
    return sorted(p for p in path.iterdir() if is_batch_name(p.name))


def run_view(archive: Archive, run_id: str) -> dict[str, Any]:
    """``archive show``: the run's manifest, or for a run still writing (or one that died and
    no run has tidied yet), what its files' headers say."""
    path = run_path(archive, run_id)
    manifest_path = path / MANIFEST
    if manifest_path.is_file():
        view: dict[str, Any] = json.loads(manifest_path.read_text())
        view["sealed"] = True
    else:
        files = [_summary_or_unreadable(p) for p in batch_files(path)]
        rows: dict[str, int] = {}
        for f in files:
            for table, n in f["rows"].items():
                rows[table] = rows.get(table, 0) + int(n)
        view = {
            "run_id": run_id,
            "status": "unsealed",
            "files": files,
            "rows": rows,
            "bytes": sum(f["bytes"] for f in files),
            "sealed": False,
        }
    view["dir"] = str(path)
    return view


def runs_view(archive: Archive) -> list[dict[str, Any]]:
    """``archive list``: every archived run, oldest first, without its file list."""
    if not archive.root.is_dir():
        return []
    out = []
    for path in sorted(archive.root.iterdir()):
        if not path.is_dir() or not is_run_dir_name(path.name):
            continue
        try:
            view = run_view(archive, path.name)
        except (OSError, ValueError):
            continue
        view["files"] = len(view["files"])
        out.append(view)
    return sorted(out, key=lambda v: str(v.get("finished_at") or ""))
