"""Direct access to a test's database: seed many rows fast, count them, read run records."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select

from botfleet.config import Settings
from botfleet.store.models import Bot, CleanupAudit, CleanupRun, Result
from botfleet.store.session import create_engine


class Store:
    """Direct access to the test's database: seed rows, count them, read run records."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)

    async def close(self) -> None:
        await self.engine.dispose()

    async def seed_bots(
        self,
        n: int,
        *,
        results_per_bot: int = 1,
        deleted_ago: timedelta | None = timedelta(days=30),
        chunk: int = 2000,
        name: str = "seed",
    ) -> list[uuid.UUID]:
        """``n`` bots (soft-deleted ``deleted_ago`` ago, or live with None), with results."""
        now = datetime.now(UTC)
        ids = [uuid.uuid4() for _ in range(n)]
        deleted_at = now - deleted_ago if deleted_ago is not None else None
        status = "deleted" if deleted_ago is not None else "exited"
        async with self.engine.begin() as conn:
            for start in range(0, n, chunk):
                part = ids[start : start + chunk]
                await conn.execute(
                    insert(Bot),
                    [
                        {
                            "id": i,
                            "name": f"{name}-{i.hex[:12]}",
                            "image": "botfleet/sample-bot:latest",
                            "env": {},
                            "labels": {},
                            "status": status,
                            "token_hash": "0" * 64,
                            "created_at": now - timedelta(days=60),
                            "updated_at": now,
                            "deleted_at": deleted_at,
                        }
                        for i in part
                    ],
                )
                if results_per_bot:
                    await conn.execute(
                        insert(Result),
                        [
                            {"bot_id": i, "created_at": now - timedelta(days=40), "data": {"n": k}}
                            for i in part
                            for k in range(results_per_bot)
                        ],
                    )
        return ids

    async def seed_orphaned_results(self, n: int) -> None:
        """Results whose bot_id names no bot row."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(Result),
                [{"bot_id": uuid.uuid4(), "created_at": datetime.now(UTC), "data": {}}] * n,
            )

    async def count(self, model: Any, *where: Any) -> int:
        async with self.engine.connect() as conn:
            stmt = select(func.count()).select_from(model)
            for clause in where:
                stmt = stmt.where(clause)
            return int((await conn.execute(stmt)).scalar_one())

    async def bots_left(self, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Bot.id))
            return {r[0] for r in rows} & set(ids)

    async def results_per_bot(self) -> dict[uuid.UUID, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Result.bot_id, func.count()).group_by(Result.bot_id))
            return {r[0]: int(r[1]) for r in rows}

    async def runs(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(CleanupRun).order_by(CleanupRun.started_at))
            return [dict(r._mapping) for r in rows]

    async def audit_count(self, kind: str | None = None) -> int:
        """How many resources the audit records as deleted (a batch counts its members)."""
        query = select(func.coalesce(func.sum(CleanupAudit.resource_count), 0))
        if kind:
            query = query.where(CleanupAudit.kind == kind)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def wipe(self) -> None:
        async with self.engine.begin() as conn:
            for model in (Result, Bot, CleanupAudit, CleanupRun):
                await conn.execute(delete(model))


async def apoll(
    condition: Callable[[], Awaitable[Any]], timeout: float, what: str, every: float = 0.05
) -> Any:
    """Wait for ``await condition()`` to be truthy and return it; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)
