"""Keeping the archive true and small: files no committed batch owns go, old runs go.

A batch file is committed exactly when an audit record of its run names it (the record is
written in the batch's own transaction). A crash between a file's fsync and its batch's commit
leaves a file whose rows are still in the store: the next run removes it before it purges those
rows again into its own files, so every purged row is in exactly one archive file. Runs whose
manifest (or, for a run that never sealed, newest file) is older than
CLEANUP_ARCHIVE_RETENTION_DAYS are removed whole. Both are called by a run that holds the
cleanup lock, so no other run is writing (design.md, safety rule 5).

:func:`leftovers` and :func:`expired` decide; the rest reads and removes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from botfleet.archive.format import AUDIT_KEY, MANIFEST, SUFFIX, is_batch_name, is_run_dir_name
from botfleet.archive.reader import file_summary
from botfleet.archive.writer import Archive, write_json_atomic
from botfleet.store.models import CleanupAudit
from botfleet.store.session import SessionFactory


@dataclass(frozen=True)
class RunDir:
    """One run's directory as found on disk."""

    run_id: str
    path: Path
    files: frozenset[str]  # batch files, committed or not
    temporaries: frozenset[str]  # *.tmp: never committed
    manifest: Mapping[str, Any] | None
    newest: datetime  # its newest entry's mtime

    @property
    def listed(self) -> frozenset[str]:
        if self.manifest is None:
            return frozenset()
        return frozenset(f["name"] for f in self.manifest.get("files", []))

    @property
    def finished(self) -> datetime:
        if self.manifest is not None and self.manifest.get("finished_at"):
            return datetime.fromisoformat(str(self.manifest["finished_at"]))
        return self.newest


@dataclass
class Tidied:
    removed_files: list[str] = field(default_factory=list)  # run/name of uncommitted files
    removed_runs: list[str] = field(default_factory=list)  # runs past retention

    def as_json(self) -> dict[str, Any]:
        return {"removed_files": self.removed_files, "removed_runs": self.removed_runs}


def leftovers(run: RunDir, committed: Iterable[str]) -> tuple[set[str], set[str]]:
    """(files to remove, files to add to the manifest): a file no manifest lists stays only
    if its batch's audit record names it (its commit's answer may have been lost)."""
    owned = set(committed)
    unlisted = set(run.files) - run.listed
    return {f for f in unlisted if f not in owned} | set(run.temporaries), unlisted & owned


def expired(runs: Iterable[RunDir], now: datetime, days: float | None) -> list[RunDir]:
    if days is None:
        return []
    cutoff = now - timedelta(days=days)
    return [r for r in runs if r.finished < cutoff]


def scan(root: Path) -> list[RunDir]:
    """Every run directory under ``root`` (anything else there is left alone)."""
    if not root.is_dir():
        return []
    runs = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or not is_run_dir_name(path.name):
            continue
        runs.append(read_run_dir(path))
    return runs


def read_run_dir(path: Path) -> RunDir:
    files, temporaries = set(), set()
    newest = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    manifest = None
    for entry in path.iterdir():
        mtime = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
        newest = max(newest, mtime)
        if entry.name.endswith(".tmp") or entry.name == ".probe":
            temporaries.add(entry.name)
        elif is_batch_name(entry.name):
            files.add(entry.name)
        elif entry.name == MANIFEST:
            with contextlib.suppress(OSError, ValueError):
                manifest = json.loads(entry.read_text())
    return RunDir(path.name, path, frozenset(files), frozenset(temporaries), manifest, newest)


async def committed_files(sessions: SessionFactory, run_id: str) -> set[str]:
    """The batch files the audit of ``run_id`` names: those whose batch committed."""
    name = CleanupAudit.snapshot[AUDIT_KEY].as_string()
    async with sessions() as session:
        rows = await session.execute(
            select(name).where(CleanupAudit.run_id == uuid.UUID(run_id)).distinct()
        )
        return {n for (n,) in rows if n}


async def tidy(
    archive: Archive, sessions: SessionFactory, *, current: str, now: datetime
) -> Tidied:
    """Remove uncommitted files of earlier runs and whole runs past retention."""
    done = Tidied()
    runs = [r for r in scan(archive.root) if r.run_id != current]
    for run in runs:
        if run.files <= run.listed and not run.temporaries:
            continue
        committed = await committed_files(sessions, run.run_id) if run.files - run.listed else set()
        remove, adopt = leftovers(run, committed)
        for name in sorted(remove):
            (run.path / name).unlink(missing_ok=True)
            if name.endswith(SUFFIX):
                done.removed_files.append(f"{run.run_id}/{name}")
        if adopt or run.manifest is None:
            _recover_manifest(run, adopt)
    for run in expired(runs, now, archive.retention_days):
        shutil.rmtree(run.path, ignore_errors=True)
        done.removed_runs.append(run.run_id)
    return done


def _recover_manifest(run: RunDir, adopt: set[str]) -> None:
    """A run that died before sealing: a manifest of its committed files, marked recovered."""
    listed = {f["name"]: f for f in (run.manifest or {}).get("files", [])}
    for name in sorted(adopt):
        listed[name] = file_summary(run.path / name)
    manifest = dict(run.manifest or {"run_id": run.run_id, "status": "abandoned"})
    manifest.update(
        recovered=True,
        finished_at=manifest.get("finished_at") or run.newest.isoformat(),
        files=[listed[n] for n in sorted(listed)],
        bytes=sum(int(f["bytes"]) for f in listed.values()),
    )
    rows: dict[str, int] = {}
    for f in listed.values():
        for table, n in f["rows"].items():
            rows[table] = rows.get(table, 0) + int(n)
    manifest["rows"] = rows
    write_json_atomic(run.path / MANIFEST, manifest)
