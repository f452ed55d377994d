"""docs/archive.md's worked example, run as written (its ```sql blocks) with DuckDB against an
archive a real purge wrote: the documented format and the documented queries stay true."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from botfleet.archive.reader import read_lines
from botfleet.archive.writer import Archive
from botfleet.config import Settings
from tests.archive.test_archived_purge import NOW, seed_varied
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]
DOC = Path(__file__).resolve().parents[2] / "docs" / "archive.md"


def documented_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


@contextmanager
def cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


async def test_the_documented_duckdb_queries_read_a_real_archive(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    bots = await seed_varied(store, 9)
    orphans = await store.orphans(4)
    service = make_service(settings, store, Clock(NOW), archive=Archive(root))
    report = await service.run(trigger="cli", actor="cli:doc", dry_run=False)
    run_id = report["run_id"]
    per_bot = {str(b): i % 4 for i, b in enumerate(bots)}
    queries = documented_queries()
    assert len(queries) == 3
    with cwd(root):
        purged = duckdb.sql(queries[0].replace("RUN_ID", run_id)).fetchall()
        counted = duckdb.sql(queries[1]).fetchall()
        headers = duckdb.sql(queries[2]).fetchall()
    assert {row[0] for row in purged} == set(per_bot)
    assert [row[5] for row in purged] == sorted(row[5] for row in purged)
    assert {row[0]: row[4] for row in purged} == per_bot
    assert all(row[3].startswith("bots: expired") for row in purged)
    orphan_owner = next(
        line["row"]["bot_id"]
        for path in root.glob("*/orphaned_results-*")
        for line in read_lines(path)
        if line["table"] == "results"
    )
    expected = {uuid.UUID(b): n for b, n in per_bot.items() if n}
    expected[uuid.UUID(orphan_owner)] = len(orphans)
    assert dict(counted) == expected
    assert {(r[0], r[1]): (r[3], r[4]) for r in headers} == {
        (run_id, "bots"): (9, sum(per_bot.values())),
        (run_id, "orphaned_results"): (None, len(orphans)),
    }
