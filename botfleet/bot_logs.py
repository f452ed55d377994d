"""A bot's container logs: which workload on which engine, then its lines — the last ones at
once, or followed as the bot prints them.

An engine's log stream is blocking (``ContainerEngine.open_logs``). A tail is read whole in a
worker thread; a follow gets a thread of its own for its lifetime (it may wait hours for a line),
so followers never hold the loop's shared pool that every other blocking call needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from botfleet.bot_queries import get_bot
from botfleet.errors import WorkloadGone
from botfleet.runtime.fleet import Fleet
from botfleet.runtime.log_stream import LogLine, LogQuery, LogStream
from botfleet.store.session import SessionFactory

# Most lines a tail may ask for; the API refuses more (422 naming ``tail``), it does not cap.
MAX_TAIL = 10_000
_END = object()


@dataclass(frozen=True)
class BotLogs:
    """Opens a bot's log stream through the engine that runs it."""

    sessions: SessionFactory
    fleet: Fleet

    async def open(self, bot_id: uuid.UUID, query: LogQuery) -> LogStream:
        """:class:`BotNotFound` (purged), :class:`WorkloadGone` (no container, or the engine no
        longer has it), :class:`EngineUnavailable` (its engine does not answer or left
        ``DOCKER_HOSTS``)."""
        bot = await get_bot(self.sessions, bot_id)
        if not bot.container_id:
            raise WorkloadGone(bot.engine or "-", "-", f"bot {bot_id} has no container")
        engine = self.fleet.get(bot.engine)
        try:
            return await asyncio.to_thread(engine.open_logs, bot.container_id, query)
        except WorkloadGone as exc:
            raise WorkloadGone(
                exc.engine,
                exc.container_id,
                f"bot {bot_id}'s container was removed: by the cleanup once the bot was deleted, "
                "or by hand",
            ) from None

    async def tail(self, bot_id: uuid.UUID, query: LogQuery) -> list[LogLine]:
        """The lines there are now (``query.follow`` is ignored)."""
        stream = await self.open(bot_id, LogQuery(tail=query.tail, since=query.since))
        try:
            return await asyncio.to_thread(list, stream)
        finally:
            stream.close()


async def follow(stream: LogStream, heartbeat: float) -> AsyncIterator[LogLine | None]:
    """The stream's lines as they come, and None after ``heartbeat`` seconds without one (so the
    caller can show it is alive, and learn whether its reader went away). Ends when the engine
    ends the stream (the workload stopped); closing the generator closes the stream."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def put(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody reads any more
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        try:
            for line in stream:
                put(line)
        except Exception as exc:
            put(exc)
        finally:
            put(_END)

    threading.Thread(target=pump, name="bot-log-follow", daemon=True).start()
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            if isinstance(item, LogLine):
                yield item
    finally:
        stream.close()
