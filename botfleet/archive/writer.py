"""Writing a run's archive: one file per purge batch, durable before the batch commits.

Each batch file is written whole to a temporary name, renamed to its deterministic name
(:func:`~botfleet.archive.format.batch_name`), then fsynced, and its directory too — all before
the batch's transaction commits (design.md, safety rule 8: no archive, no delete). Renaming
before the fsyncs lets one journal commit carry the file and its name (the directory's fsync
then finds nothing left to write: half the time of fsync-then-rename, BENCHMARKS.md, Archive);
readers still never see a file being written. A crash before the commit — even one that loses a
renamed file's unsynced data — leaves a file whose rows are still in the store; the batch's
audit record, written in the same transaction, is what says a file committed, and the next run
removes the files no audit record names, unread (:mod:`botfleet.archive.upkeep`).

gzip, compressed by ISA-L (``isal``, pycompression/python-isal) at level 1: the output is plain
gzip, so every tool reads it as before (DuckDB, pandas, ``zcat | jq``, Python's own ``gzip``),
made about six times faster than zlib's fastest level and a tenth smaller (BENCHMARKS.md,
Archive); the compression releases the GIL. ``mtime=0`` makes a batch written again byte for
byte the same.

The blocking calls run in a worker thread (:meth:`RunArchive.write_async`), so a slow disk holds
only its own batch, never the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from isal import igzip

from botfleet.archive.format import MANIFEST, ArchivedFile, BatchBody, batch_name, header
from botfleet.config import Settings
from botfleet.errors import BotfleetError

COMPRESS_LEVEL = 1  # ISA-L's levels are 0-3
# With an archive, a purge batch holds this many times CLEANUP_BATCH_SIZE rows: an archived batch
# pays a transaction of its own, a file and its fsyncs, so fewer of them (BENCHMARKS.md, Archive).
BATCH_FACTOR = 2
_PROBE = ".probe"


class ArchiveUnavailable(BotfleetError):
    """CLEANUP_ARCHIVE_DIR cannot be written: a run must delete nothing."""

    def __init__(self, directory: Path, cause: BaseException) -> None:
        super().__init__(
            f"CLEANUP_ARCHIVE_DIR={directory} is not writable ({type(cause).__name__}: "
            f"{cause}); nothing was deleted"
        )
        self.directory = directory


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX needs the directory synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(value, out, indent=1, default=str)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class Archive:
    """CLEANUP_ARCHIVE_DIR and how long runs are kept there; passed to the cleanup service."""

    root: Path
    retention_days: float | None = None
    compress_level: int = COMPRESS_LEVEL
    batch_factor: int = 1  # archived batches hold this many times CLEANUP_BATCH_SIZE rows

    def run_dir(self, run_id: uuid.UUID | str) -> Path:
        return self.root / str(run_id)

    def open_run(self, run_id: uuid.UUID, actor: str, clock: Callable[[], datetime]) -> RunArchive:
        """The run's directory, made and proven writable (a probe file written, fsynced and
        removed) before the run deletes anything; :class:`ArchiveUnavailable` otherwise."""
        directory = self.run_dir(run_id)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
            fsync_dir(self.root)
            probe = directory / _PROBE
            with open(probe, "wb") as out:
                out.write(b"ok")
                out.flush()
                os.fsync(out.fileno())
            probe.unlink()
        except OSError as exc:
            raise ArchiveUnavailable(self.root, exc) from exc
        return RunArchive(self, run_id, actor, clock, directory)


def archive_for(settings: Settings) -> Archive | None:
    """CLEANUP_ARCHIVE_DIR and CLEANUP_ARCHIVE_RETENTION_DAYS, or None when unset."""
    if settings.cleanup_archive_dir is None:
        return None
    return Archive(
        Path(settings.cleanup_archive_dir).absolute(),
        retention_days=settings.cleanup_archive_retention_days,
        batch_factor=BATCH_FACTOR,
    )


@dataclass
class RunArchive:
    """One run's archive directory: names its batches, writes them, remembers what committed."""

    archive: Archive
    run_id: uuid.UUID
    actor: str
    clock: Callable[[], datetime]
    directory: Path
    files: list[ArchivedFile] = field(default_factory=list)
    _walks: dict[str, int] = field(default_factory=dict)

    def walk(self, kind: str) -> int:
        """A new walk of stage ``kind``: the number its batch files carry."""
        number = self._walks.get(kind, 0)
        self._walks[kind] = number + 1
        return number

    def name(self, kind: str, walk: int, seq: int) -> str:
        return batch_name(kind, walk, seq)

    def write(self, kind: str, name: str, body: BatchBody) -> ArchivedFile:
        """Write the batch file and make it durable; returns it (not yet committed)."""
        path = self.directory / name
        tmp = path.with_name(path.name + ".tmp")
        line = header(
            run_id=self.run_id, kind=kind, name=name, actor=self.actor, at=self.clock(), body=body
        )
        text = [line.encode()]
        text.extend(b.encode() if isinstance(b, str) else b for b in body.blocks if b)
        text.append(b"")  # every line ends with a newline
        data = igzip.compress(b"\n".join(text), compresslevel=self.archive.compress_level, mtime=0)
        with open(tmp, "wb") as raw:
            raw.write(data)
            raw.flush()
            os.replace(tmp, path)  # whole in the page cache: readers never see it half-written
            os.fsync(raw.fileno())
        size = len(data)
        fsync_dir(self.directory)
        return ArchivedFile(name, dict(body.counts), size)

    async def write_async(self, kind: str, name: str, body: BatchBody) -> ArchivedFile:
        return await asyncio.to_thread(self.write, kind, name, body)

    def committed(self, file: ArchivedFile) -> None:
        self.files.append(file)

    def discard(self, name: str) -> None:
        """A batch that wrote its file but did not commit: its rows are still in the store."""
        for leftover in (self.directory / name, self.directory / (name + ".tmp")):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def seal(self, *, status: str, finished: datetime) -> None:
        """The run's manifest: its committed files, rows and bytes (``archive show`` reads it).
        A run that archived nothing leaves no directory (scheduled runs are many)."""
        if not self.files and not any(self.directory.iterdir()):
            self.directory.rmdir()
            return
        write_json_atomic(self.directory / MANIFEST, manifest(self, status, finished))

    def summary(self) -> dict[str, Any]:
        """What the report says of the archive."""
        return {
            "dir": str(self.directory),
            "files": [f.as_json() for f in sorted(self.files, key=lambda f: f.name)],
            "bytes": sum(f.bytes for f in self.files),
            "rows": _total_rows(self.files),
        }


def _total_rows(files: list[ArchivedFile]) -> dict[str, int]:
    total: dict[str, int] = {}
    for f in files:
        for table, n in f.counts.items():
            total[table] = total.get(table, 0) + n
    return total


def manifest(run: RunArchive, status: str, finished: datetime) -> dict[str, Any]:
    return {
        "run_id": str(run.run_id),
        "status": status,
        "finished_at": finished.isoformat(),
        "recovered": False,
        **{k: v for k, v in run.summary().items() if k != "dir"},
    }
