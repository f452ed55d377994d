"""An archived purge on both backends: every purged row in exactly one committed batch file,
named by its audit and the report; a restore that gives back every field; a restore refused
when it would collide; an archive that cannot be written stops the purge before it deletes."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from botfleet.archive.format import AUDIT_KEY, MANIFEST
from botfleet.archive.reader import read_lines, run_view, runs_view
from botfleet.archive.restore import RestoreRefused, restore_run
from botfleet.archive.writer import BATCH_FACTOR, Archive, archive_for
from botfleet.cleanup import archive_lines
from botfleet.cleanup.scheduler import Scheduler
from botfleet.config import Settings
from botfleet.constants import BREAKER_OPEN, DEPENDENCY_ARCHIVE
from botfleet.store.models import Bot, Result
from tests.support.cleanup import Clock, days, deleted, make_service
from tests.support.store import Store, store

__all__ = ["store"]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def seed_varied(store: Store, n: int) -> list[uuid.UUID]:
    """Expired bots with every column set to something, each with results of nested data."""
    ids = []
    async with store.sessions() as session, session.begin():
        for i in range(n):
            bot = Bot(
                id=uuid.uuid4(),
                name=f"varied-{i}-{uuid.uuid4().hex[:6]}",
                image="botfleet/sample-bot:1.2",
                command=["python", "-c", f"print({i})"] if i % 2 else None,
                env={"MODE": "x" * i, "Ü": "ünïcode"},
                labels={"team": f"t{i % 3}", "tier": "gold"},
                status="deleted",
                exit_code=i % 4 if i % 3 else None,
                container_id=f"{i:064x}",
                engine="local",
                node=f"node-{i}" if i % 2 else None,
                status_detail="exited (0)",
                placement=["node.role==worker"] if i % 2 else None,
                resources={"memory": "64M"} if i % 2 else None,
                token_hash=f"{i:064x}",
                created_at=NOW - days(60) + timedelta(microseconds=123457 * i),
                updated_at=NOW - days(20),
                deleted_at=NOW - days(10) - timedelta(seconds=i),
            )
            session.add(bot)
            session.add_all(
                Result(
                    bot_id=bot.id,
                    created_at=NOW - days(30) + timedelta(seconds=k),
                    data={"k": k, "nested": {"list": [1, 2.5, None, "s"]}, "ok": True},
                )
                for k in range(i % 4)
            )
            ids.append(bot.id)
    return ids


async def columns_of(store: Store, model: Any, ids: list[Any]) -> dict[Any, dict[str, Any]]:
    async with store.sessions() as session:
        rows = (await session.scalars(select(model).where(model.id.in_(ids)))).all()
        return {row.id: {c.name: getattr(row, c.key) for c in model.__table__.c} for row in rows}


async def result_ids_of(store: Store, bot_ids: list[uuid.UUID]) -> list[int]:
    async with store.sessions() as session:
        return list(await session.scalars(select(Result.id).where(Result.bot_id.in_(bot_ids))))


def archived_ids(root: Path) -> tuple[list[str], list[int]]:
    """Every bot and result id in every batch file under ``root``, repeats kept."""
    bots: list[str] = []
    results: list[int] = []
    for path in sorted(root.glob("*/*.jsonl.gz")):
        for line in read_lines(path):
            if line["table"] == "bots":
                bots.append(line["row"]["id"])
            elif line["table"] == "results":
                results.append(int(line["row"]["id"]))
    return bots, results


@pytest.mark.parametrize("chunk_lines", [None, 2], ids=["default_chunks", "chunks_of_2_lines"])
async def test_a_purge_archives_every_row_once_and_a_restore_gives_every_field_back(
    settings: Settings,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk_lines: int | None,
) -> None:
    if chunk_lines is not None:  # PostgreSQL hands each batch's lines over in several rows
        monkeypatch.setattr(archive_lines, "CHUNK_LINES", chunk_lines)
    root = tmp_path / "archive"
    expired = await seed_varied(store, 23)
    live = await store.bot(results=2)
    orphans = await store.orphans(5)
    bots_before = await columns_of(store, Bot, expired)
    result_ids = await result_ids_of(store, expired)
    results_before = await columns_of(store, Result, [*result_ids, *orphans])
    clock = Clock(NOW)
    settings = settings.model_copy(update={"cleanup_batch_size": 4})
    service = make_service(settings, store, clock, archive=Archive(root))

    report = await service.run(trigger="cli", actor="cli:test", dry_run=False)

    assert report["status"] == "succeeded", report["errors"]
    assert deleted(report)["bots"] == 23 and deleted(report)["orphaned_results"] == 5
    run_dir = root / report["run_id"]
    files = report["archive"]["files"]
    assert {f["name"] for f in files} == {p.name for p in run_dir.glob("*.jsonl.gz")}
    assert len(files) >= 23 // 4  # one file per batch
    assert report["archive"]["rows"] == {"bots": 23, "results": len(result_ids) + 5}
    bots, results = archived_ids(root)
    assert sorted(bots) == sorted(str(b) for b in expired), "every purged bot exactly once"
    assert sorted(results) == sorted([*result_ids, *orphans]), "every purged result once"
    # The audit names the file of every batch it records.
    named = {r["snapshot"][AUDIT_KEY] for r in await store.audit_records(report["run_id"])}
    assert named == {f["name"] for f in files}
    manifest = json.loads((run_dir / MANIFEST).read_text())
    assert manifest["status"] == "succeeded" and manifest["files"] == files
    assert [r["run_id"] for r in runs_view(Archive(root))] == [report["run_id"]]
    assert run_view(Archive(root), report["run_id"])["rows"] == report["archive"]["rows"]
    # Each file: its header first, then one line per row; gzip with no timestamp.
    first = sorted(run_dir.glob("bots-*.jsonl.gz"))[0]
    with gzip.open(first, "rt") as lines:
        header = json.loads(lines.readline())
    assert header["table"] == "batch" and header["run_id"] == report["run_id"]
    assert header["kind"] == "bots" and header["actor"] == "cli:test"
    for path in run_dir.glob("bots-*.jsonl.gz"):  # the bots' lines, then their results'
        tables = [line["table"] for line in read_lines(path)][1:]
        assert tables == sorted(tables), path.name  # "bots" < "results"

    # A dry run of the restore writes nothing.
    dry = await restore_run(Archive(root), store.sessions, report["run_id"], now=NOW, dry_run=True)
    assert dry["bots"] == 23 and await store.bots_left(expired) == set()

    restored_at = NOW + days(1)
    answer = await restore_run(Archive(root), store.sessions, report["run_id"], now=restored_at)
    assert answer["bots"] == 23 and answer["results"] == len(result_ids) + 5
    bots_after = await columns_of(store, Bot, expired)
    results_after = await columns_of(store, Result, [*result_ids, *orphans])
    assert results_after == results_before, "every result, field by field"
    assert set(bots_after) == set(bots_before)
    for bot_id, before in bots_before.items():
        after = bots_after[bot_id]
        assert after["deleted_at"] == restored_at, "a restored bot starts a new retention"
        assert {**after, "deleted_at": None} == {**before, "deleted_at": None}, bot_id
    assert str(live) in await store.bot_ids(live=True)

    # Again: every row would collide; nothing is written.
    with pytest.raises(RestoreRefused, match="already in the store"):
        await restore_run(Archive(root), store.sessions, report["run_id"], now=restored_at)


async def test_one_bot_is_restored_with_its_original_deleted_at_if_asked(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    expired = await seed_varied(store, 6)
    before = await columns_of(store, Bot, expired)
    service = make_service(settings, store, Clock(NOW), archive=Archive(root))
    report = await service.run(trigger="cli", actor="cli:test", dry_run=False, only=["bots"])
    assert deleted(report)["bots"] == 6
    one = expired[3]
    answer = await restore_run(
        Archive(root), store.sessions, report["run_id"], now=NOW, bot_id=one, keep_deleted_at=True
    )
    assert answer["bots"] == 1 and answer["results"] == 3
    assert await columns_of(store, Bot, expired) == {one: before[one]}
    assert await store.results_of(one) == 3


async def test_an_archive_that_cannot_be_written_stops_the_purge_and_opens_its_breaker(
    settings_factory: Any, store: Store, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the archive's parent should be")
    root = blocker / "archive"
    settings: Settings = settings_factory(
        cleanup_archive_dir=str(tmp_path), cleanup_breaker_threshold=1
    )
    expired = await seed_varied(store, 5)
    orphans = await store.orphans(2)
    service = make_service(settings, store, Clock(NOW), archive=Archive(root))
    scheduler = Scheduler(settings=settings, service=service, engines=[], clock=Clock(NOW))

    tick = await scheduler.tick()

    report = tick.report
    assert report is not None and report["status"] == "failed"
    assert deleted(report)["bots"] == 0 and deleted(report)["orphaned_results"] == 0
    (error,) = [e for e in report["errors"] if e["stage"] == "archive"]
    assert error["dependency"] == DEPENDENCY_ARCHIVE
    assert "CLEANUP_ARCHIVE_DIR" in error["message"] and "nothing was deleted" in error["message"]
    assert await store.bots_left(expired) == set(expired)
    assert set(orphans) <= await store.result_ids()
    assert scheduler.breakers.get(DEPENDENCY_ARCHIVE).state == BREAKER_OPEN
    skipped = await scheduler.tick()
    assert skipped.report is None and "archive circuit breaker open" in (skipped.reason or "")


async def test_results_past_retention_of_a_live_bot_are_archived_and_restored(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    """The results stage (RESULT_RETENTION_DAYS) archives too; its results come back to their
    live bot."""
    root = tmp_path / "archive"
    live = await store.bot(results=0)
    async with store.sessions() as session, session.begin():
        session.add_all(
            Result(bot_id=live, created_at=NOW - days(age), data={"age": age})
            for age in (1, 2, 20, 30, 40)
        )
    old = sorted(await result_ids_of(store, [live]))[2:]
    before = await columns_of(store, Result, old)
    settings = settings.model_copy(update={"result_retention_days": 10})
    service = make_service(settings, store, Clock(NOW), archive=Archive(root))
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, only=["results"])
    assert report["resources"]["results"]["deleted"] == 3, report["errors"]
    assert [f["name"] for f in report["archive"]["files"]] == ["results-00-000001.jsonl.gz"]
    _, results = archived_ids(root)
    assert sorted(results) == old
    answer = await restore_run(Archive(root), store.sessions, report["run_id"], now=NOW)
    assert answer == answer | {"bots": 0, "results": 3}
    assert await columns_of(store, Result, old) == before


@pytest.mark.parametrize("factor", [1, 3])
async def test_archived_batches_hold_the_archive_s_factor_times_the_batch_size(
    settings: Settings, store: Store, tmp_path: Path, factor: int
) -> None:
    """Fewer, larger batches when archiving (writer.BATCH_FACTOR in production): no file holds
    more than factor times CLEANUP_BATCH_SIZE bots, and some hold more than one batch size."""
    expired = await seed_varied(store, 30)
    settings = settings.model_copy(update={"cleanup_batch_size": 2, "cleanup_adaptive": False})
    archive = Archive(tmp_path, batch_factor=factor)
    service = make_service(settings, store, Clock(NOW), archive=archive)
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, only=["bots"])
    assert report["status"] == "succeeded" and deleted(report)["bots"] == 30
    sizes = [f["rows"]["bots"] for f in report["archive"]["files"]]
    assert sum(sizes) == 30 and max(sizes) <= 2 * factor
    assert max(sizes) > 2 or factor == 1, sizes
    bots, _results = archived_ids(tmp_path)
    assert sorted(bots) == sorted(str(b) for b in expired)


def test_an_archive_from_the_settings_batches_by_the_production_factor(
    settings: Settings, tmp_path: Path
) -> None:
    archive = archive_for(settings.model_copy(update={"cleanup_archive_dir": str(tmp_path)}))
    assert archive is not None and archive.batch_factor == BATCH_FACTOR > 1
