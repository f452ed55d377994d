"""Results: bots post them with their own token; operators read them newest first.

The ingest path is the hot one (every bot, every few seconds): one indexed read of the bot's
token hash and one multi-row INSERT per request, on a plain connection (no ORM session).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botfleet.auth import hash_token, matches_hash, tokens_equal
from botfleet.errors import (
    BotDeleted,
    BotNotFound,
    BotTokenForbidden,
    BotTokenInvalid,
    InvalidInput,
)
from botfleet.pagination import Page, PageRequest, decode_cursor, encode_cursor
from botfleet.store.models import Bot, Result
from botfleet.store.session import SessionFactory


class ResultService:
    def __init__(self, *, db: AsyncEngine, sessions: SessionFactory, admin_token: str) -> None:
        self._db = db
        self._sessions = sessions
        self._admin_token = admin_token

    async def ingest(
        self, bot_id: uuid.UUID, token: str, items: Sequence[Any], *, now: datetime
    ) -> int:
        """Store ``items`` (each one result's ``data``) for the bot that ``token`` belongs to.

        401: nobody's token; 403: another bot's or the admin's; 410: the bot is deleted. The
        token is checked before the bot's state, so a stranger learns nothing about it.
        """
        async with self._db.connect() as conn:
            if len(items) == 1:
                # The common case, one statement in autocommit: the row goes in only if the
                # token is the live bot's. Only a refusal pays for finding out why.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                if await self._insert_if_authorised(conn, bot_id, token, items[0], now):
                    return 1
                await self._check_and_insert(conn, bot_id, token, items, now)
            else:
                async with conn.begin():
                    await self._check_and_insert(conn, bot_id, token, items, now)
        return len(items)

    @staticmethod
    async def _insert_if_authorised(
        conn: AsyncConnection, bot_id: uuid.UUID, token: str, data: Any, now: datetime
    ) -> bool:
        columns = Result.__table__.c
        source = select(
            Bot.id, literal(now, columns.created_at.type), literal(data, columns.data.type)
        ).where(Bot.id == bot_id, Bot.token_hash == hash_token(token), Bot.deleted_at.is_(None))
        result = await conn.execute(
            insert(Result).from_select(["bot_id", "created_at", "data"], source)
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def _check_and_insert(
        self,
        conn: AsyncConnection,
        bot_id: uuid.UUID,
        token: str,
        items: Sequence[Any],
        now: datetime,
    ) -> None:
        query = select(Bot.token_hash, Bot.deleted_at).where(Bot.id == bot_id)
        row = (await conn.execute(query)).first()
        if row is None:
            raise BotNotFound(bot_id)
        if not matches_hash(token, row.token_hash):
            if tokens_equal(token, self._admin_token):
                raise BotTokenForbidden(bot_id, "the admin token may not post results")
            other = await conn.scalar(
                select(Bot.id).where(Bot.token_hash == hash_token(token)).limit(1)
            )
            if other is not None:
                raise BotTokenForbidden(bot_id, "this is another bot's token")
            raise BotTokenInvalid(bot_id)
        if row.deleted_at is not None:
            raise BotDeleted(bot_id)
        # A delete landing between the check and the insert lets this last batch in; a purge
        # there leaves an orphaned result, which the cleanup service removes.
        await conn.execute(
            insert(Result), [{"bot_id": bot_id, "created_at": now, "data": d} for d in items]
        )

    async def list(self, bot_id: uuid.UUID, page: PageRequest) -> Page[Result]:
        """A bot's results, newest first (by id: insertion order, immune to clock skew)."""
        async with self._sessions() as session:
            if await session.scalar(select(Bot.id).where(Bot.id == bot_id)) is None:
                raise BotNotFound(bot_id)
            query = (
                select(Result)
                .where(Result.bot_id == bot_id)
                .order_by(Result.id.desc())
                .limit(page.limit + 1)
            )
            if page.cursor is not None:
                (last_id,) = decode_cursor(page.cursor, 1)
                if not isinstance(last_id, int) or not 0 <= last_id < 2**63:
                    raise InvalidInput("cursor", "is not a cursor this server issued")
                query = query.where(Result.id < last_id)
            if page.offset:
                query = query.offset(page.offset)
            total = await session.scalar(
                select(func.count()).select_from(Result).where(Result.bot_id == bot_id)
            )
            rows = list((await session.scalars(query)).all())
        more, rows = len(rows) > page.limit, rows[: page.limit]
        cursor = encode_cursor([rows[-1].id]) if more else None
        return Page(items=rows, total=int(total or 0), next_cursor=cursor)
