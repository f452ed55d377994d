"""The result ingest's fast lane to PostgreSQL: one statement per post on a plain asyncpg pool.

A post's token check and its insert are the same statement, in autocommit: the rows go in only
if the token's hash is the live bot's (``deleted_at IS NULL``), read from the ``bots`` row in that
very statement. There is no cache of tokens, so a bot deleted by any replica is refused by every
replica on its next post; a refused post inserts nothing and is answered by the full path
(``results.ResultService``), which finds out why (401/403/404/410).

Why a pool of its own beside SQLAlchemy's: building the statement, the ORM's column coercions,
the greenlet hop and the pool's pre-ping cost the server more CPU than the rest of the request
(BENCHMARKS.md, "Where a single post's time went"). asyncpg's pool replaces a connection it
found closed (a PostgreSQL restart) on the next acquire, which is what the pre-ping bought.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from botfleet.auth import hash_token

# One statement for one result or a batch: the data arrive as one JSON array, so a batch of
# 1,000 is one round trip and one parameter, not 1,000 rows of parameters.
INSERT_IF_AUTHORISED = """
INSERT INTO results (bot_id, created_at, data)
SELECT b.id, $3::timestamptz, item.value
FROM bots AS b, jsonb_array_elements($4::jsonb) WITH ORDINALITY AS item(value, n)
WHERE b.id = $1 AND b.token_hash = $2 AND b.deleted_at IS NULL
ORDER BY item.n
"""


class StatelessConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection that only ever runs the one autocommit statement: nothing to reset.

    asyncpg's pool sends a reset (unlock advisory locks, close cursors, unlisten, reset
    settings) on every release, a second round trip per post; this pool's connections never
    hold any of that, so the reset is skipped.
    """

    def get_reset_query(self) -> str:
        return ""


def plain_dsn(database_url: str) -> str:
    """``DATABASE_URL`` as asyncpg reads it (no SQLAlchemy driver suffix)."""
    scheme, sep, rest = database_url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


class ResultWriter:
    """Inserts a post's results if its token is the live bot's; the pool opens on first use."""

    def __init__(self, database_url: str, *, max_connections: int = 10) -> None:
        self._dsn = plain_dsn(database_url)
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _acquire_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._max,
                        server_settings={"application_name": "botfleet"},
                        connection_class=StatelessConnection,
                    )
        return self._pool

    async def insert_if_authorised(
        self, bot_id: uuid.UUID, token: str, items: Sequence[Any], *, now: datetime
    ) -> bool:
        """True if every item was stored; False (nothing stored) if the token is not the live
        bot's. ``items`` are checked already (``api/schemas/results.check_storable``)."""
        pool = await self._acquire_pool()
        status = await pool.execute(
            INSERT_IF_AUTHORISED, bot_id, hash_token(token), now, json.dumps(list(items))
        )
        return bool(status == f"INSERT 0 {len(items)}")

    async def start(self) -> None:
        """Nothing to do: the pool opens on the first post (a server that never ingests never
        connects twice)."""

    async def stop(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
