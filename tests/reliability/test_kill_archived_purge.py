"""kill -9 during an archived purge (CLEANUP_ARCHIVE_DIR), on PostgreSQL and on a SQLite file:
a real ``botfleet serve`` purges a seeded store in small batches and is killed with SIGKILL — at
random points, and exactly between a batch file's fsync and its batch's commit (the server stops
itself there: _serve_stopping.py).

After each kill, reading the store and the archive directly: the store is whole (as after any
kill: test_kill_mid_purge.check_whole), every purged row is in exactly one committed batch file
(one its run's audit names), and every row of a file no audit names is still in the store. After
a restart and a new run: the job is done, the files no batch committed are gone, and every
purged row — bots, their results, orphaned results — is in exactly one archive file.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import select

from bench.seed import SeedSpec, bot_uuid, group_of, seed
from botfleet.archive.format import AUDIT_KEY
from botfleet.archive.reader import read_lines
from botfleet.archive.writer import BATCH_FACTOR
from botfleet.store.migrate import upgrade
from botfleet.store.models import CleanupAudit
from tests.conftest import make_settings
from tests.reliability._serve import AUTH, Serve
from tests.reliability.test_kill_mid_purge import _none, server_sessions
from tests.support.figures import record_figure, scale
from tests.support.store import CHECKER, Store
from tests.support.wait import wait_until, wait_until_async

BATCH = 20  # rows per archived batch: CLEANUP_BATCH_SIZE times the archive's BATCH_FACTOR
STOPPING_SERVE = [sys.executable, str(Path(__file__).with_name("_serve_stopping.py"))]


async def check_whole(
    db: Store, results_per_bot: int, keep: set[str], expired: set[str], orphans: int
) -> int:
    """test_kill_mid_purge.check_whole with orphaned results seeded: the store after a kill
    holds whole bots or none; returns how many expired bots are gone."""
    per_bot = await db.results_per_bot()
    present = await db.bot_ids()
    broken = [b for b in present if per_bot.get(b, 0) != results_per_bot]
    assert not broken, f"{len(broken)} bots lost some results but not their row: {broken[:3]}"
    gone = expired - present
    assert not gone & set(per_bot), "a result outlived its purged bot"
    assert await db.orphaned_results() <= orphans
    assert keep <= present, f"{len(keep - present)} live or retained bots were purged"
    assert set(await db.deleted_ids("bots")) == gone, "every purged bot has its audit record"
    assert not await db.double_deletions()
    return len(gone)


async def committed_files(db: Store) -> set[tuple[str, str]]:
    """(run id, file name) of every batch file an audit record names: those that committed."""
    name = CleanupAudit.snapshot[AUDIT_KEY].as_string()
    async with db.sessions() as session:
        rows = await session.execute(select(CleanupAudit.run_id, name).distinct())
    return {(str(run_id), file) for run_id, file in rows if file}


def files_on_disk(root: Path) -> dict[tuple[str, str], tuple[list[str], list[int]]]:
    """Every batch file under ``root``: its bot ids and result ids."""
    out = {}
    for path in sorted(root.glob("*/*.jsonl.gz")):
        bots: list[str] = []
        results: list[int] = []
        for line in read_lines(path):
            if line["table"] == "bots":
                bots.append(line["row"]["id"])
            elif line["table"] == "results":
                results.append(int(line["row"]["id"]))
        out[(path.parent.name, path.name)] = (bots, results)
    return out


async def check_archive(
    db: Store, root: Path, purged_bots: set[str], purged_results: set[int], *, tidied: bool
) -> int:
    """The archive's invariant; returns how many files no batch committed (still on disk)."""
    committed = await committed_files(db)
    files = files_on_disk(root)
    assert committed <= set(files), "a committed batch's file is missing"
    bots: Counter[str] = Counter()
    results: Counter[int] = Counter()
    uncommitted = [key for key in files if key not in committed]
    for key in committed:
        bots.update(files[key][0])
        results.update(files[key][1])
    assert set(bots) == purged_bots, "every purged bot in a committed file, and only those"
    assert set(results) == purged_results, "every purged result in a committed file"
    assert {n for n in bots.values()} <= {1} and {n for n in results.values()} <= {1}, (
        "a purged row in two committed files"
    )
    present = await db.bot_ids()
    present_results = await db.result_ids()
    for key in uncommitted:
        assert set(files[key][0]) <= present, f"{key}: archived, uncommitted, yet purged"
        assert set(files[key][1]) <= present_results, f"{key}: results purged, uncommitted"
    if tidied:
        assert not uncommitted, f"files no batch committed are still there: {uncommitted[:3]}"
    return len(uncommitted)


@pytest.fixture(params=["postgres", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store the server will migrate: a PostgreSQL database, or a SQLite file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/botfleet.db"
    url: str = request.getfixturevalue("fresh_pg_database")
    return url


async def test_kill_9_during_an_archived_purge(
    store_url: str, tmp_path: Path, instance: str
) -> None:
    settings = make_settings(database_url=store_url, botfleet_instance=instance)
    await upgrade(settings)
    spec = SeedSpec(
        bots=scale(4_000, 100_000),
        results_per_bot=3,
        expired_fraction=0.5,
        recent_deleted_fraction=0.1,
        orphaned_results=scale(300, 3_000),
    )
    await asyncio.to_thread(seed, store_url, spec)
    groups = {str(bot_uuid(spec.seed, i)): group_of(i, spec) for i in range(spec.bots)}
    expired = {b for b, g in groups.items() if g == "expired"}
    keep = set(groups) - expired
    root = tmp_path / "archive"
    env = {
        "DATABASE_URL": store_url,
        "BOTFLEET_INSTANCE": instance,
        "CLEANUP_ENABLED": "true",
        "CLEANUP_STARTUP_DELAY_SECONDS": "0",
        "CLEANUP_INTERVAL_HOURS": "1",
        "CLEANUP_BATCH_SIZE": str(BATCH // BATCH_FACTOR),
        "CLEANUP_ADAPTIVE": "false",
        "CONTAINER_CLEANUP_ENABLED": "false",
        "DOCKER_HOSTS": "unix:///nonexistent.sock",
        "CLEANUP_ARCHIVE_DIR": str(root),
    }
    db = Store(settings, checker=True)
    rng = random.Random(spec.seed)
    kills: list[dict[str, object]] = []
    try:
        all_results = await db.result_ids()
        for round_ in range(scale(6, 20)):
            between = round_ % 2 == 0  # alternately: in the window, and anywhere
            stop_after = rng.randint(2, 12)
            at_least = await db.audit_count("bots") + BATCH * rng.randint(3, 20)
            extra = {"STOP_AFTER_ARCHIVE_FILES": str(stop_after)} if between else {}
            serve = Serve(tmp_path, command=STOPPING_SERVE, **env, **extra)
            try:
                if between:
                    process = psutil.Process(serve.proc.pid)

                    def stopped(process: psutil.Process = process) -> bool:
                        return bool(process.status() == psutil.STATUS_STOPPED)

                    wait_until(
                        stopped,
                        timeout=90,
                        message="the server to stop between a file and its commit",
                        interval=0.05,
                    )
                else:

                    async def deleting(at_least: int = at_least) -> bool:
                        return await db.audit_count("bots") >= at_least

                    await wait_until_async(
                        deleting, timeout=90, message="the scheduled run to purge a few batches"
                    )
                serve.proc.kill()  # SIGKILL, stopped or not: the process gets no say
                await asyncio.to_thread(serve.proc.wait, 30)
            finally:
                serve.stop()
            if not settings.is_sqlite:  # SQLite's locks went with the process
                await wait_until_async(
                    lambda: _none(server_sessions(db)),
                    timeout=30,
                    message="PostgreSQL to drop its sessions",
                )
            gone = await check_whole(db, spec.results_per_bot, keep, expired, spec.orphaned_results)
            assert gone < len(expired), "the run finished before the kill: nothing was tested"
            purged_results = all_results - await db.result_ids()
            stray = await check_archive(
                db, root, expired - await db.bot_ids(), purged_results, tidied=False
            )
            if between:
                assert stray >= 1, "killed between a file and its commit: that file is stray"
            kills.append({"between": between, "purged": gone, "stray_files": stray})

        # Restart without the scheduler: a manual run finishes the job and tidies the archive.
        final = {**env, "CLEANUP_ENABLED": "false", "CLEANUP_BATCH_SIZE": "500"}
        serve = Serve(tmp_path, command=None, **final)
        try:
            await asyncio.to_thread(serve.ready)
            async with httpx.AsyncClient(base_url=serve.url, headers=AUTH, timeout=300) as http:
                answer = await http.post("/admin/cleanup?dry_run=false")
            assert answer.status_code == 200, answer.text
            report = answer.json()
        finally:
            serve.stop()
        assert report["status"] == "succeeded", report
        whole = await check_whole(db, spec.results_per_bot, keep, expired, spec.orphaned_results)
        assert whole == len(expired) and await db.orphaned_results() == 0
        purged_results = all_results - await db.result_ids()
        assert len(purged_results) == len(expired) * spec.results_per_bot + spec.orphaned_results
        await check_archive(db, root, expired, purged_results, tidied=True)
        bots, results = Counter[str](), Counter[int]()
        for file_bots, file_results in files_on_disk(root).values():
            bots.update(file_bots)
            results.update(file_results)
        assert set(bots) == expired and set(bots.values()) == {1}
        assert set(results) == purged_results and set(results.values()) == {1}
        # Each run tidies what the runs before it left: this one, what the last kill left.
        assert len(report["archive"]["removed_files"]) == kills[-1]["stray_files"]
    finally:
        await db.close()
    assert CHECKER
    record_figure(
        f"kill_9_archived_purge_{'sqlite' if settings.is_sqlite else 'postgres'}",
        bots=spec.bots,
        batch=BATCH,
        kills=kills,
        inconsistencies=0,
    )
