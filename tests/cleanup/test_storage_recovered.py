"""Storage recovered per kind (cleanup/storage.py), on both stores: a real run reports what it
freed — SQLite the pages it handed back, PostgreSQL the deleted rows' heap tuples summed by its
own statements — and a dry run reports nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from botfleet.cleanup.policy import Policy
from botfleet.cleanup.policy_file import parse_rules
from botfleet.config import Settings
from botfleet.store.models import Result
from tests.support.cleanup import Clock, days, deleted, make_service
from tests.support.store import Store, store

__all__ = ["store"]
NOW = datetime.now(UTC)
PAYLOAD = "x" * 400  # each result's data: enough rows to free whole SQLite pages
KINDS = ("bots", "orphaned_results", "results_over_quota")
ROW_BYTES = "(pg_column_size({t}.*) + 7) / 8 * 8"


def policy() -> Policy:
    rules = parse_rules({"rules": [{"match": {"group": "capped"}, "max_results_per_bot": 5}]})
    return Policy(bot_retention_days=7, rules=rules)


async def seed(store: Store) -> dict[str, list[Any]]:
    """Expired bots with results, orphaned results, a capped live bot over its quota, and live
    bots that keep everything."""
    expired = [await store.bot(deleted_at=NOW - days(9)) for _ in range(30)]
    capped = await store.bot(labels={"group": "capped"})
    kept = [await store.bot() for _ in range(3)]
    async with store.sessions() as session, session.begin():
        for owner in [*expired, capped, *kept]:
            session.add_all(Result(bot_id=owner, data={"n": n, "pad": PAYLOAD}) for n in range(20))
        orphan_owner = uuid.uuid4()
        session.add_all(
            Result(bot_id=orphan_owner, data={"n": n, "pad": PAYLOAD}) for n in range(300)
        )
    return {"expired": expired, "capped": [capped], "orphan": [orphan_owner]}


async def heap_bytes(store: Store, table: str, where: str, **params: Any) -> int:
    """PostgreSQL: the heap bytes of ``table``'s rows matching ``where``, read by the test."""
    sql = f"SELECT coalesce(sum({ROW_BYTES.format(t='t')}), 0) FROM {table} t WHERE {where}"
    return int(await store.value(sql, **params))


async def used_pages(store: Store) -> tuple[int, int]:
    """SQLite: pages in use, and the page size."""
    row = (
        await store.rows(
            "SELECT page_count - freelist_count AS used, page_size"
            " FROM pragma_page_count, pragma_freelist_count, pragma_page_size"
        )
    )[0]
    return int(row.used), int(row.page_size)


async def test_a_real_run_reports_the_bytes_it_freed_per_kind(
    settings: Settings, store: Store
) -> None:
    ids = await seed(store)
    postgres = not settings.is_sqlite
    expected: dict[str, int] = {}
    if postgres:  # exactly what the statements will delete, measured beforehand
        expired = [str(b) for b in ids["expired"]]
        in_expired = "CAST(bot_id AS text) = ANY(:ids)"
        expected["bots"] = (
            await heap_bytes(store, "bots", "CAST(id AS text) = ANY(:ids)", ids=expired)
            + await heap_bytes(store, "results", in_expired, ids=expired)
            + await heap_bytes(store, "bot_events", in_expired, ids=expired)
        )
        expected["orphaned_results"] = await heap_bytes(
            store, "results", "bot_id = CAST(:b AS uuid)", b=str(ids["orphan"][0])
        )
        expected["results_over_quota"] = await heap_bytes(
            store,
            "results",
            "bot_id = CAST(:b AS uuid) AND id NOT IN"
            " (SELECT id FROM results WHERE bot_id = CAST(:b AS uuid) ORDER BY created_at DESC,"
            " id DESC LIMIT 5)",
            b=str(ids["capped"][0]),
        )
    service = make_service(settings, store, Clock(NOW), policy=policy())
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False)
    assert report["status"] == "succeeded", report["errors"]
    assert deleted(report)["bots"] == 30 and deleted(report)["bot_results"] == 600
    assert deleted(report)["orphaned_results"] == 300
    assert deleted(report)["results_over_quota"] == 15
    res = report["resources"]
    payload = len(PAYLOAD)
    if postgres:
        for kind in KINDS:
            assert res[kind]["bytes_reclaimed"] == expected[kind], kind
        # Sane: at least the payload deleted, at most a few times it.
        assert 600 * payload < res["bots"]["bytes_reclaimed"] < 600 * payload * 2
        assert 300 * payload < res["orphaned_results"]["bytes_reclaimed"] < 300 * payload * 2
    else:
        _used, page = await used_pages(store)
        for kind in KINDS:
            stats = res[kind]
            freed = stats["store_bytes_before"] - stats["store_bytes_after"]
            assert stats["bytes_reclaimed"] == max(0, freed), kind
            assert stats["bytes_reclaimed"] % page == 0, kind
        # 600 and 300 rows of ~430 bytes: most of their pages went back to the freelist.
        assert 600 * payload // 2 < res["bots"]["bytes_reclaimed"] < 600 * payload * 2
        assert 300 * payload // 2 < res["orphaned_results"]["bytes_reclaimed"] < 300 * payload * 2
    for kind in KINDS:
        assert res[kind]["store_bytes_before"] > 0 and res[kind]["store_bytes_after"] > 0
    assert "bytes_reclaimed" not in res["bot_results"]  # counted with its bots


async def test_one_stage_reports_what_it_freed_and_on_sqlite_exactly_its_pages(
    settings: Settings, store: Store
) -> None:
    """The figure is the page difference itself: measured around a run of one stage, with
    nothing else writing, it matches the test's own reading, less the audit's pages."""
    await seed(store)
    if not settings.is_sqlite:
        used_before, page = 0, 1
    else:
        used_before, page = await used_pages(store)
    service = make_service(settings, store, Clock(NOW), policy=policy())
    report = await service.run(trigger="cli", actor="cli:t", dry_run=False, only="orphaned_results")
    stats = report["resources"]["orphaned_results"]
    assert stats["deleted"] == 300 and stats["bytes_reclaimed"] > 0
    if settings.is_sqlite:
        used_after, _ = await used_pages(store)
        assert stats["store_bytes_after"] == used_after * page  # the report is stored after
        # Before the stage, the run had only recorded itself and its plan (a page or two).
        assert 0 <= stats["store_bytes_before"] - used_before * page <= 4 * page


async def test_a_dry_run_reports_no_bytes(settings: Settings, store: Store) -> None:
    await seed(store)
    service = make_service(settings, store, Clock(NOW), policy=policy())
    report = await service.run(trigger="cli", actor="cli:t", dry_run=True)
    assert report["status"] == "succeeded", report["errors"]
    for kind, stats in report["resources"].items():
        assert "bytes_reclaimed" not in stats, kind
        assert "store_bytes_before" not in stats, kind
    assert report["resources"]["orphaned_results"]["found"] == 300
