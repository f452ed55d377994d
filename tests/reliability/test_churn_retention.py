"""Churn under advanced retention: bots post results through the real API while real cleanups
run back to back with a quota and an idle rule active (PostgreSQL).

Afterwards the checker reads the store directly: no acknowledged result newer than its bot's
quota boundary was lost (each bot still holds its newest ``QUOTA`` acknowledged results), no bot
that posted within ``idle_after_days`` was soft-deleted, every silent bot was, and no held bot
was touched (neither soft-deleted nor any of its results taken).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from botfleet.auth import hash_token
from botfleet.cleanup.policy import Policy, parse_rules
from botfleet.cleanup.service import CleanupService
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot
from tests.conftest import started_app
from tests.support.figures import record_figure, scale
from tests.support.store import Store, overlapping

SECONDS = scale(6, 60)
WRITERS = scale(6, 20)
QUOTA = 5
POLICY = Policy(
    bot_retention_days=7,
    rules=parse_rules(
        {
            "rules": [
                {
                    "match": {"churn": "yes"},
                    "max_results_per_bot": QUOTA,
                    "idle_after_days": 7,
                    "action": "soft_delete",
                }
            ]
        }
    ),
)


@dataclass
class Writer:
    id: str
    token: str
    held: bool
    acked: list[int] = field(default_factory=list)  # the seq of each acknowledged result


async def seed(store: Store, n: int, *, held: bool = False) -> list[Writer]:
    """Bots created 30 days ago (idle unless they post), with a token the test knows."""
    writers = []
    async with store.sessions() as session, session.begin():
        for _ in range(n):
            token = uuid.uuid4().hex + uuid.uuid4().hex
            bot = Bot(
                id=uuid.uuid4(),
                name=f"churn-{uuid.uuid4().hex[:10]}",
                image="botfleet/sample-bot:latest",
                token_hash=hash_token(token),
                labels={"churn": "yes"} | ({"botfleet.hold": "true"} if held else {}),
                status="running",
                created_at=datetime.now(UTC) - timedelta(days=30),
            )
            session.add(bot)
            writers.append(Writer(str(bot.id), token, held))
    return writers


async def post(
    http: httpx.AsyncClient, writer: Writer, rng: random.Random, deadline: float
) -> None:
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        answer = await http.post(
            f"/bots/{writer.id}/results",
            json={"data": {"seq": seq}},
            headers={"Authorization": f"Bearer {writer.token}"},
        )
        assert answer.status_code == 201, answer.text  # a posting bot is never soft-deleted
        writer.acked.append(seq)
        await asyncio.sleep(rng.uniform(0, 0.05))


async def test_quota_idle_and_budget_under_churn(pg_factory: Callable[..., Settings]) -> None:
    settings = pg_factory(auth_failure_limit=1_000_000, container_cleanup_enabled=False)
    store = Store(settings)
    posting = await seed(store, WRITERS)
    silent = await seed(store, 3)
    held = await seed(store, 2, held=True)
    # The held bots hold more than the quota; nothing may take them.
    for writer in held:
        async with store.sessions() as session, session.begin():
            from botfleet.store.models import Result

            session.add_all(
                Result(bot_id=uuid.UUID(writer.id), data={"seq": i}) for i in range(QUOTA * 3)
            )
    service = CleanupService(
        settings=settings, db=store.engine, fleet=Fleet.from_settings(settings), policy=POLICY
    )
    reports: list[dict[str, Any]] = []
    app, ctx = await started_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50007))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            deadline = time.monotonic() + SECONDS
            writers = asyncio.gather(
                *(post(http, w, random.Random(i), deadline) for i, w in enumerate(posting))
            )

            async def sweep() -> None:
                while not writers.done():
                    reports.append(await service.run(trigger="cli", actor="cli:t", dry_run=False))

            await asyncio.gather(writers, sweep())
            reports.append(await service.run(trigger="cli", actor="cli:t", dry_run=False))
    finally:
        await ctx.__aexit__(None, None, None)
        await store.close()

    db = Store(settings, checker=True)
    try:
        live = await db.bot_ids(live=True)
        assert {w.id for w in posting} <= live, "a bot that posted was soft-deleted"
        assert not {w.id for w in silent} & live, "a silent bot was left live"
        lost_newest = 0
        for writer in posting:
            stored = {d["seq"] for d in await db.result_data(writer.id)}
            newest = set(writer.acked[-QUOTA:])
            lost_newest += len(newest - stored)
            assert len(stored) <= QUOTA
        assert lost_newest == 0
        for writer in held:
            assert writer.id in live
            assert len(await db.result_data(writer.id)) == QUOTA * 3
        assert not await db.double_deletions()
        assert not overlapping(await db.runs())
        quota_deleted = len(await db.deleted_ids("results_over_quota"))
    finally:
        await db.close()
    assert all(r["status"] == "succeeded" for r in reports), [r["errors"] for r in reports]
    record_figure(
        "churn_retention",
        seconds=SECONDS,
        writers=WRITERS,
        results_acknowledged=sum(len(w.acked) for w in posting),
        cleanup_runs=len(reports),
        results_deleted_over_quota=quota_deleted,
        newest_results_lost=lost_newest,
        posting_bots_soft_deleted=0,
        silent_bots_soft_deleted=len(silent),
        held_bots_touched=0,
    )
