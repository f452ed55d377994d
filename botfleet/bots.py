"""The bot lifecycle: create, read, list, soft delete and restore.

Steps that span the database and an engine are ordered so that a failure in the second undoes
the first (never a half-done write):

- create: reserve the row (``pending``, which also claims the name), run the container, then
  record it. If the container fails the row goes; if recording fails the container goes.
- delete: mark the row, then stop the container. If the engine is down, the reconciler finishes
  the stop once it answers again (a running container of a deleted bot is always stopped).
- restore: bring the container back first, then clear ``deleted_at``; if that write fails, the
  container is stopped again (or removed, if it was a fresh one).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.auth import hash_token, new_bot_token
from botfleet.bot_events import deleted_event, restored_event
from botfleet.bot_queries import BotFilter, get_bot, list_bots, live_counts
from botfleet.bot_spec import NewBot, container_spec, resources_json
from botfleet.config import Settings
from botfleet.constants import (
    BOT_STOP_TIMEOUT_SECONDS,
    STATUS_DELETED,
    STATUS_PENDING,
)
from botfleet.errors import BotNameTaken, BotNotFound, RestoreExpired
from botfleet.pagination import Page, PageRequest
from botfleet.reconcile_plan import container_status
from botfleet.runtime.base import ContainerEngine, ContainerInfo
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)


def restorable(deleted_at: datetime, now: datetime, retention_days: int) -> bool:
    """Inside retention: the cleanup service may purge the record from then on."""
    return deleted_at > now - timedelta(days=retention_days)


class BotService:
    """Bot lifecycle over a session factory and a fleet; the API and the tests call this."""

    def __init__(self, *, sessions: SessionFactory, fleet: Fleet, settings: Settings) -> None:
        self._sessions = sessions
        self._fleet = fleet
        self._settings = settings

    # --- create ------------------------------------------------------------------------------
    async def create(self, new: NewBot, *, now: datetime) -> tuple[Bot, str]:
        """Run a new bot; answer it with its token (shown this once, stored only as a hash)."""
        self._fleet.check_supported(new.placement, new.resources)
        async with self._sessions() as session:
            await _ensure_name_free(session, new.name)
            counts = await live_counts(session)
        engine = await self._fleet.place(counts)
        token = new_bot_token()
        bot = Bot(
            id=uuid.uuid4(),
            name=new.name,
            image=new.image,
            command=list(new.command) if new.command else None,
            env=dict(new.env),
            labels=dict(new.labels),
            placement=list(new.placement) or None,
            resources=resources_json(new.resources),
            status=STATUS_PENDING,
            engine=engine.name,
            token_hash=hash_token(token),
            created_at=now,
            updated_at=now,
            status_changed_at=now,
        )
        await self._reserve(bot)
        try:
            info = await engine.run(container_spec(bot, token, self._settings))
        except BaseException:
            await asyncio.shield(self._forget(bot.id))
            raise
        try:
            bot = await self._record_container(bot.id, engine.name, info, now=now)
        except BaseException:
            await asyncio.shield(self._discard(engine, info.id, bot.id))
            raise
        if bot.deleted_at is not None:  # deleted meanwhile, when it had no container to stop
            await self._stop(bot)
        log.info("bot created", extra={"bot_id": str(bot.id), "engine": engine.name})
        return bot, token

    async def _reserve(self, bot: Bot) -> None:
        try:
            async with self._sessions() as session, session.begin():
                session.add(bot)
        except IntegrityError:
            # The partial unique index uq_bots_name_live: a concurrent create won the name.
            raise BotNameTaken(bot.name) from None

    async def _record_container(
        self, bot_id: uuid.UUID, engine: str, info: ContainerInfo, *, now: datetime
    ) -> Bot:
        async with self._sessions() as session, session.begin():
            bot = await session.get(Bot, bot_id, with_for_update=True)
            if bot is None:
                raise BotNotFound(bot_id)
            bot.container_id = info.id
            bot.engine = engine
            bot.updated_at = now
            if bot.deleted_at is None:
                status, bot.exit_code = container_status(info)
                set_status(bot, status, now)
                bot.node, bot.status_detail = info.node, info.detail
            return bot

    async def _forget(self, bot_id: uuid.UUID) -> None:
        """Undo a reservation whose container never ran (only while it is still pending)."""
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    delete(Bot).where(Bot.id == bot_id, Bot.container_id.is_(None))
                )
        except Exception:
            log.exception("could not undo the reservation of bot %s", bot_id)

    async def _discard(self, engine: ContainerEngine, container_id: str, bot_id: uuid.UUID) -> None:
        try:
            await engine.stop(container_id, timeout=BOT_STOP_TIMEOUT_SECONDS)
            await engine.remove(container_id)
        except Exception:
            log.exception(
                "could not remove container %s of failed bot %s on %s",
                container_id,
                bot_id,
                engine.name,
            )
        await self._forget(bot_id)

    # --- read --------------------------------------------------------------------------------
    async def get(self, bot_id: uuid.UUID) -> Bot:
        return await get_bot(self._sessions, bot_id)

    async def list(self, flt: BotFilter, page: PageRequest) -> Page[Bot]:
        """Newest first; ``total`` counts every match, whatever the page."""
        return await list_bots(self._sessions, flt, page)

    # --- delete and restore ------------------------------------------------------------------
    async def delete(self, bot_id: uuid.UUID, *, now: datetime) -> Bot:
        """Soft delete: mark the row, stop the container and keep it. Idempotent."""
        async with self._sessions() as session, session.begin():
            bot = await session.get(Bot, bot_id, with_for_update=True)
            if bot is None:
                raise BotNotFound(bot_id)
            if bot.deleted_at is None:
                bot.deleted_at = now
                # How it ended decides its retention (a policy's retention by outcome).
                bot.status_at_deletion = bot.status
                session.add(deleted_event(bot_id, bot.status, now))
                set_status(bot, STATUS_DELETED, now)
                bot.updated_at = now
        await self._stop(bot)
        log.info("bot deleted", extra={"bot_id": str(bot_id)})
        return bot

    async def _stop(self, bot: Bot) -> None:
        """Stop a deleted bot's container; what fails here is left to the reconciler."""
        if not (bot.container_id and bot.engine):
            return
        try:
            engine = self._fleet.get(bot.engine)
            await engine.stop(bot.container_id, timeout=BOT_STOP_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("bot %s deleted, its container not stopped yet (%s)", bot.id, exc)

    async def restore(self, bot_id: uuid.UUID, *, now: datetime) -> tuple[Bot, str | None]:
        """Undo a delete within retention and run the bot again.

        Answers a new token when the bot runs with one: a fresh container (the old one was
        removed), or a swarm service, whose environment is updated. A plain container that is
        started again keeps the token in its environment (only its hash is stored): no new one.
        """
        bot = await self.get(bot_id)
        if bot.deleted_at is None:
            return bot, None
        if not restorable(bot.deleted_at, now, self._settings.bot_retention_days):
            raise RestoreExpired(bot_id)
        async with self._sessions() as session:
            counts = await live_counts(session)
        # Intent first, as for create and delete: once the row is live again the reconciler
        # no longer stops its container, so starting it cannot race with "finish the delete".
        await self._mark_live(bot, now)
        try:
            engine, info, token, fresh = await self._revive(bot, counts)
        except BaseException:
            await asyncio.shield(self._mark_deleted_again(bot))
            raise
        try:
            async with self._sessions() as session, session.begin():
                row = await session.get(Bot, bot_id, with_for_update=True)
                if row is None or row.deleted_at is not None:
                    raise BotNotFound(bot_id)  # purged or deleted again while we worked
                row.engine = engine.name
                row.container_id = info.id
                status, row.exit_code = container_status(info)
                set_status(row, status, now)
                row.node, row.status_detail = info.node, info.detail
                row.updated_at = now
                if token is not None:
                    row.token_hash = hash_token(token)
                # In the restore's own transaction: recorded if and only if it happened.
                session.add(restored_event(bot_id, now, fresh=fresh))
        except BaseException:
            await asyncio.shield(self._undo_revive(engine, info.id, fresh=fresh))
            await asyncio.shield(self._mark_deleted_again(bot))
            raise
        log.info("bot restored", extra={"bot_id": str(bot_id), "fresh_container": fresh})
        return row, token

    async def _mark_live(self, bot: Bot, now: datetime) -> None:
        """Clear ``deleted_at`` (claiming the name again) while the container comes back."""
        try:
            async with self._sessions() as session, session.begin():
                row = await session.get(Bot, bot.id, with_for_update=True)
                if row is None or row.deleted_at != bot.deleted_at:
                    raise BotNotFound(bot.id)  # purged, or restored by someone else meanwhile
                row.deleted_at = None
                row.status_at_deletion = None
                set_status(row, STATUS_PENDING, now)
                row.updated_at = now
                await session.flush()
        except IntegrityError:
            raise BotNameTaken(bot.name) from None

    async def _mark_deleted_again(self, bot: Bot) -> None:
        """Undo :meth:`_mark_live`: the bot is deleted as it was (same ``deleted_at``)."""
        try:
            async with self._sessions() as session, session.begin():
                row = await session.get(Bot, bot.id, with_for_update=True)
                if row is not None and row.deleted_at is None:
                    row.deleted_at = bot.deleted_at
                    row.status = STATUS_DELETED
                    row.status_at_deletion = bot.status_at_deletion
                    row.status_changed_at = bot.status_changed_at
        except Exception:
            log.exception("could not undo the restore of bot %s", bot.id)

    async def _revive(
        self, bot: Bot, counts: Mapping[str, int]
    ) -> tuple[ContainerEngine, ContainerInfo, str | None, bool]:
        """The bot's workload running again, the token it runs with if it is a new one, and
        whether the workload is a fresh one (its old one was gone)."""
        token = new_bot_token()
        spec = container_spec(bot, token, self._settings)
        engine = self._fleet.engines.get(bot.engine or "")
        if engine is not None and bot.container_id:
            revived = await engine.revive(bot.container_id, spec)
            if revived is not None:
                return engine, revived.info, token if revived.fresh_env else None, False
        if engine is None:
            # Its engine left DOCKER_HOSTS: the bot moves to the least loaded one.
            engine = await self._fleet.place(counts)
        return engine, await engine.run(spec), token, True

    async def _undo_revive(
        self, engine: ContainerEngine, container_id: str, *, fresh: bool
    ) -> None:
        try:
            await engine.stop(container_id, timeout=BOT_STOP_TIMEOUT_SECONDS)
            if fresh:
                await engine.remove(container_id)
        except Exception:
            log.exception("could not undo the restart of container %s", container_id)


def set_status(bot: Bot, status: str, now: datetime) -> None:
    """A new status, and since when it holds (a policy's ``failing_after_days`` counts from
    there); the same status again keeps its time."""
    if bot.status != status:
        bot.status = status
        bot.status_changed_at = now


async def _ensure_name_free(session: AsyncSession, name: str) -> None:
    taken = await session.scalar(
        select(Bot.id).where(Bot.name == name, Bot.deleted_at.is_(None)).limit(1)
    )
    if taken is not None:
        raise BotNameTaken(name)
