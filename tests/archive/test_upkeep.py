"""Keeping the archive true: a batch file whose batch never committed is removed by the next
run (which archives those rows again, once); runs past retention are removed whole."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from botfleet.archive.format import MANIFEST, batch_name
from botfleet.archive.upkeep import RunDir, expired, leftovers, scan
from botfleet.archive.writer import Archive, RunArchive
from botfleet.config import Settings
from tests.archive.test_archived_purge import NOW, archived_ids, seed_varied
from tests.support.cleanup import Clock, days, deleted, make_service
from tests.support.store import Store, store

__all__ = ["store"]


def run_dir(files: set[str], listed: set[str] | None, tmp: set[str] = frozenset()) -> RunDir:  # type: ignore[assignment]
    manifest = None if listed is None else {"files": [{"name": n} for n in listed]}
    return RunDir("r", Path("/x"), frozenset(files), frozenset(tmp), manifest, NOW)


@pytest.mark.parametrize(
    ("files", "listed", "committed", "remove", "adopt"),
    [
        # sealed, nothing stray
        ({"a", "b"}, {"a", "b"}, set(), set(), set()),
        # died before sealing: the audit says which committed
        ({"a", "b", "c"}, None, {"a", "b"}, {"c"}, {"a", "b"}),
        # sealed, but a file whose commit's answer was lost: the audit names it, it stays
        ({"a", "b"}, {"a"}, {"b"}, set(), {"b"}),
        # sealed, a file of a batch that rolled back
        ({"a", "b"}, {"a"}, set(), {"b"}, set()),
    ],
)
def test_a_file_stays_exactly_when_its_batch_committed(
    files: set[str], listed: set[str] | None, committed: set[str], remove: set[str], adopt: set[str]
) -> None:
    assert leftovers(run_dir(files, listed), committed) == (remove, adopt)


def test_temporaries_always_go() -> None:
    assert leftovers(run_dir({"a"}, {"a"}, {"a.tmp"}), set()) == ({"a.tmp"}, set())


@pytest.mark.parametrize(
    ("age_days", "retention", "gone"),
    [(29.9, 30.0, False), (30.1, 30.0, True), (1000, None, False), (0.6, 0.5, True)],
)
def test_runs_past_retention_go(age_days: float, retention: float | None, gone: bool) -> None:
    run = RunDir(
        "r",
        Path("/x"),
        frozenset(),
        frozenset(),
        {"finished_at": (NOW - timedelta(days=age_days)).isoformat()},
        NOW,
    )
    assert (expired([run], NOW, retention) == [run]) is gone


def test_batch_names_are_deterministic() -> None:
    assert batch_name("bots", 1, 7) == "bots-01-000007.jsonl.gz"


async def test_a_file_written_but_never_committed_is_removed_and_its_rows_archived_once_again(
    settings: Settings, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between a batch file's fsync and its commit: the batch rolls back (as after a
    crash there), its file stays; the next run removes it and archives those rows in its own."""
    root = tmp_path / "archive"
    expired_ids = await seed_varied(store, 12)
    settings = settings.model_copy(update={"cleanup_batch_size": 4})
    real_write = RunArchive.write_async
    writes = 0

    async def dies_after_second_write(self: RunArchive, *args: Any) -> Any:
        nonlocal writes
        written = await real_write(self, *args)
        writes += 1
        if writes == 2:
            raise RuntimeError("killed between the file and the commit")
        return written

    monkeypatch.setattr(RunArchive, "write_async", dies_after_second_write)
    service = make_service(settings, store, Clock(NOW), archive=Archive(root))
    first = await service.run(trigger="cli", actor="cli:t", dry_run=False, only=["bots"])
    assert deleted(first)["bots"] == 4, "the first batch committed, the second rolled back"
    stray = root / first["run_id"] / batch_name("bots", 0, 2)
    assert stray.is_file(), "the uncommitted file is left for the audit to judge"
    listed = {
        f["name"] for f in json.loads((root / first["run_id"] / MANIFEST).read_text())["files"]
    }
    assert stray.name not in listed
    bots, _ = archived_ids(root)
    assert len(bots) == 8 and len(set(bots)) == 8  # 4 purged + 4 still in the store

    monkeypatch.setattr(RunArchive, "write_async", real_write)
    second = await service.run(trigger="cli", actor="cli:t", dry_run=False, only=["bots"])
    assert deleted(second)["bots"] == 8
    assert not stray.exists()
    assert second["archive"]["removed_files"] == [f"{first['run_id']}/{stray.name}"]
    bots, _ = archived_ids(root)
    assert sorted(bots) == sorted(str(b) for b in expired_ids), "each purged bot exactly once"


async def test_the_cleanup_removes_archived_runs_past_retention(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    await seed_varied(store, 3)
    archive = Archive(root, retention_days=7)
    clock = Clock(NOW)
    service = make_service(settings, store, clock, archive=archive)
    old = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    foreign = root / "not-a-run"
    foreign.mkdir()
    assert [r.run_id for r in scan(root)] == [old["run_id"]]
    await seed_varied(store, 2)
    clock.now = NOW + days(6)
    kept = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    assert kept["archive"]["removed_runs"] == [] and (root / old["run_id"]).is_dir()
    clock.now = NOW + days(7.5)
    later = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    assert later["archive"]["removed_runs"] == [old["run_id"]]
    assert not (root / old["run_id"]).exists() and (root / kept["run_id"]).is_dir()
    assert foreign.is_dir(), "only run directories are the archive's to remove"
    assert not (root / later["run_id"]).exists(), "a run that purged nothing leaves no trace"


def test_a_batch_written_again_replaces_its_own_file_byte_for_byte(tmp_path: Path) -> None:
    import uuid

    from botfleet.archive.format import BatchBody

    archive = Archive(tmp_path / "archive")
    run = archive.open_run(uuid.uuid4(), "cli:t", Clock(NOW))
    body = BatchBody(['{"table":"bots","row":{"id":"x"}}', b'{"table":"results","row":{}}'], {})
    first = run.write("bots", batch_name("bots", 0, 1), body)
    data = (run.directory / first.name).read_bytes()
    again = run.write("bots", batch_name("bots", 0, 1), body)
    assert again == first and (run.directory / first.name).read_bytes() == data
    assert sorted(p.name for p in run.directory.iterdir()) == [first.name]


def test_a_file_cut_short_is_shown_unreadable_not_fatal(tmp_path: Path) -> None:
    """A batch file is renamed before its fsync: a power loss may leave one cut short (its batch
    never committed). ``archive show`` of that unsealed run lists it and reads the others."""
    import uuid

    from botfleet.archive.format import BatchBody
    from botfleet.archive.reader import run_view

    archive = Archive(tmp_path / "archive")
    run = archive.open_run(uuid.uuid4(), "cli:t", Clock(NOW))
    body = BatchBody(['{"table":"bots","row":{"id":"x"}}'], {"bots": 1})
    whole = run.write("bots", batch_name("bots", 0, 1), body)
    cut = run.directory / batch_name("bots", 0, 2)
    cut.write_bytes((run.directory / whole.name).read_bytes()[:12])
    view = run_view(archive, str(run.run_id))
    assert view["sealed"] is False and view["rows"] == {"bots": 1}
    files = {f["name"]: f for f in view["files"]}
    assert "unreadable" not in files[whole.name] and files[whole.name]["rows"] == {"bots": 1}
    assert files[cut.name]["unreadable"] and files[cut.name]["rows"] == {}
