"""The results_over_quota stage archives like every purge (safety rule 8): with
CLEANUP_ARCHIVE_DIR set, every result a quota or the budget deletes is in exactly one committed
batch file, named by the batch's audit records, and a restore gives it back field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from botfleet.archive.format import AUDIT_KEY
from botfleet.archive.restore import restore_run
from botfleet.archive.writer import Archive
from botfleet.cleanup.policy import Policy, parse_rules
from botfleet.cleanup.rules import ResultsBudget
from botfleet.config import Settings
from botfleet.constants import KIND_RESULTS_OVER_QUOTA
from botfleet.store.models import Result
from tests.archive.test_archived_purge import archived_ids, columns_of
from tests.support.cleanup import Clock, make_service
from tests.support.store import Store, store

__all__ = ["store"]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_results_over_quota_are_archived_once_and_restored(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    bots = [await store.bot(labels={"group": "q"}, results=0) for _ in range(3)]
    async with store.sessions() as session, session.begin():
        session.add_all(
            Result(bot_id=b, created_at=NOW - timedelta(minutes=m), data={"m": m, "n": [1, None]})
            for b in bots
            for m in range(1, 9)
        )
    before = await columns_of(store, Result, list(await store.result_ids()))
    rules = parse_rules({"rules": [{"match": {"group": "q"}, "max_results_per_bot": 3}]})
    policy = Policy(bot_retention_days=7, rules=rules, results_budget=ResultsBudget(6, "rows"))
    service = make_service(settings, store, Clock(NOW), policy=policy, archive=Archive(root))

    report = await service.run(
        trigger="cli", actor="cli:t", dry_run=False, only=KIND_RESULTS_OVER_QUOTA
    )

    assert report["status"] == "succeeded", report["errors"]
    gone = set(before) - await store.result_ids()
    assert len(gone) == report["resources"][KIND_RESULTS_OVER_QUOTA]["deleted"] == 15 + 3
    _, archived = archived_ids(root)
    assert sorted(archived) == sorted(gone)  # each exactly once
    named = {a["snapshot"].get(AUDIT_KEY) for a in await store.audit(report["run_id"])}
    assert named and None not in named
    assert named == {f["name"] for f in report["archive"]["files"]}
    await restore_run(Archive(root), store.sessions, report["run_id"], now=NOW)
    assert await columns_of(store, Result, sorted(gone)) == {r: before[r] for r in gone}
