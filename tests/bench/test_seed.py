"""bench.seed fills a store deterministically, with the same groups on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bench.seed import SeedSpec, bot_uuid, group_of, seed
from botfleet.store.models import Bot, Result
from botfleet.store.session import create_engine, create_session_factory
from tests.conftest import make_settings

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SPEC = SeedSpec(
    bots=200,
    results_per_bot=3,
    expired_fraction=0.4,
    recent_deleted_fraction=0.1,
    orphaned_results=7,
    seed=42,
    now=NOW,
)


async def _summary(url: str) -> dict[str, object]:
    engine = create_engine(make_settings(database_url=url))
    sessions = create_session_factory(engine)
    try:
        async with sessions() as s:
            expired = await s.scalar(
                select(func.count()).where(Bot.deleted_at < NOW - timedelta(days=7))
            )
            recent = await s.scalar(
                select(func.count()).where(Bot.deleted_at >= NOW - timedelta(days=7))
            )
            live = await s.scalar(select(func.count()).where(Bot.deleted_at.is_(None)))
            results = await s.scalar(select(func.count()).select_from(Result))
            orphans = await s.scalar(
                select(func.count())
                .select_from(Result)
                .where(~select(Bot.id).where(Bot.id == Result.bot_id).exists())
            )
            first = await s.get(Bot, bot_uuid(42, 0))
            return {
                "expired": expired,
                "recent": recent,
                "live": live,
                "results": results,
                "orphans": orphans,
                "first_group": "live" if first and first.deleted_at is None else "deleted",
            }
    finally:
        await engine.dispose()


def test_seed_is_deterministic_and_matches_the_spec(database_url: str) -> None:
    counts = seed(database_url, SPEC)
    assert counts["bots"] == 200
    assert counts["results"] == 200 * 3 + 7
    summary = asyncio.run(_summary(database_url))
    expected_groups = [group_of(i, SPEC) for i in range(SPEC.bots)]
    assert summary["expired"] == expected_groups.count("expired")
    assert summary["recent"] == expected_groups.count("recent")
    assert summary["live"] == expected_groups.count("live")
    assert abs(expected_groups.count("expired") - 80) <= 2  # 40 % of 200, spread by i mod 1000
    assert abs(expected_groups.count("recent") - 20) <= 2
    assert summary["results"] == 607
    assert summary["orphans"] == 7
    assert summary["first_group"] == ("live" if expected_groups[0] == "live" else "deleted")
