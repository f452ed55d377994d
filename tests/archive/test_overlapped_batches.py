"""A heap walk's archived batches overlap (cleanup/archived_batches.py): batch N+1's statement
runs while batch N's file is written, yet each walk writes its files one at a time and in order,
and every purged row is archived once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from botfleet.archive.format import AUDIT_KEY
from botfleet.archive.reader import read_lines
from botfleet.archive.writer import Archive, RunArchive
from botfleet.cleanup.purge_bots import BotPurge
from botfleet.config import Settings
from tests.archive.test_archived_purge import NOW, seed_varied
from tests.conftest import postgres_only
from tests.support.cleanup import Clock, deleted, make_service
from tests.support.store import Store, store

__all__ = ["store"]
SLOW_DISK = 0.08  # seconds a batch file takes to write: long beside a statement of a few rows


@postgres_only
async def test_the_next_statement_runs_while_a_file_is_written_and_files_keep_their_order(
    settings: Settings, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expired = await seed_varied(store, 60)
    settings = settings.model_copy(update={"cleanup_batch_size": 5, "cleanup_adaptive": False})
    events: list[tuple[float, str, str]] = []  # (time, what, file name)
    lock = threading.Lock()
    real_write, real_statement = RunArchive.write, BotPurge._bots_by_tid

    def slow_write(self: RunArchive, kind: str, name: str, body: Any) -> Any:
        with lock:
            events.append((time.perf_counter(), "write", name))
        time.sleep(SLOW_DISK)
        written = real_write(self, kind, name, body)
        with lock:
            events.append((time.perf_counter(), "written", name))
        return written

    async def statement(self: BotPurge, session: Any, size: int, window: Any, name: Any) -> Any:
        with lock:
            events.append((time.perf_counter(), "statement", name))
        return await real_statement(self, session, size, window, name)

    monkeypatch.setattr(RunArchive, "write", slow_write)
    monkeypatch.setattr(BotPurge, "_bots_by_tid", statement)
    service = make_service(settings, store, Clock(NOW), archive=Archive(tmp_path))
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, only=["bots"])
    assert report["status"] == "succeeded" and deleted(report)["bots"] == 60

    writing: dict[str, str] = {}  # walk -> the file it is writing
    overlapped = 0
    written: dict[str, list[str]] = {}
    for _at, what, name in sorted(events):
        walk = name.rsplit("-", 1)[0]
        if what == "statement":
            overlapped += walk in writing  # this walk's last file is still being written
        elif what == "write":
            assert walk not in writing, f"{walk}: two files written at once"
            writing[walk] = name
        else:
            del writing[walk]
            written.setdefault(walk, []).append(name)
    assert overlapped >= 3, "statements wait for the files: no overlap"
    assert all(names == sorted(names) for names in written.values()), written

    archived = [
        line["row"]["id"]
        for path in sorted((tmp_path / report["run_id"]).glob("*.jsonl.gz"))
        for line in read_lines(path)
        if line["table"] == "bots"
    ]
    assert sorted(archived) == sorted(str(b) for b in expired)
    named = {a["snapshot"][AUDIT_KEY] for a in await store.audit_records(report["run_id"])}
    assert named == {name for names in written.values() for name in names}
