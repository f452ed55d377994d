"""What a cleanup tells receivers (NOTIFY_WEBHOOK_URLS), written to the outbox, never sent here.

A real run's purge warnings and its ``run.finished`` event, and a breaker opening or closing:
each event is written in the transaction of what it reports (or one of its own), and a failure
to write one is logged, never a reason for a run to fail (:mod:`botfleet.notify`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from botfleet.cleanup.context import RunContext
from botfleet.cleanup.notices import purge_warnings, tidy_outbox
from botfleet.cleanup.policy import Policy
from botfleet.notify.events import breaker_changed, run_finished
from botfleet.notify.outbox import Notifier

log = logging.getLogger(__name__)

Enqueue = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class RunNotices:
    """The cleanup's events; ``notifier`` None: no receivers, only the outbox's upkeep."""

    notifier: Notifier | None

    async def after_run(self, ctx: RunContext, policy: Policy) -> str | None:
        """Purge warnings queued and the outbox tidied; what failed, if anything (the run's
        report carries it as an error of stage ``notify``)."""
        now = ctx.clock()
        notifier = self.notifier
        try:
            if notifier is not None:
                warned = await purge_warnings(ctx, policy, notifier, now)
                if warned:
                    log.info("cleanup queued %d purge warning(s)", warned)
            await tidy_outbox(ctx, now, notifier.before_purge if notifier else None)
        except Exception as exc:
            return f"notices failed: {exc}"
        return None

    def run_finished(
        self, ctx: RunContext, run_id: uuid.UUID, report: dict[str, Any]
    ) -> Enqueue | None:
        """Writes the run's ``run.finished`` event in the report's transaction."""
        notifier = self.notifier
        if notifier is None:
            return None

        async def enqueue(session: AsyncSession) -> None:
            now = ctx.clock()
            link = notifier.link(f"/admin/cleanup/runs/{run_id}")
            event = run_finished(report, source=notifier.source, link=link, time=now)
            await notifier.enqueue(session, [event], now)

        return enqueue

    async def breakers_changed(
        self, ctx: RunContext, changes: Sequence[tuple[str, str, str | None]]
    ) -> None:
        """(dependency, new state, last error) of breakers that opened or closed: their events,
        in a transaction of their own (a breaker lives in memory, nothing else to write)."""
        notifier = self.notifier
        if notifier is None or not changes:
            return
        now = ctx.clock()
        events = [
            breaker_changed(name, state, last_error=error, source=notifier.source, time=now)
            for name, state, error in changes
        ]
        try:
            async with ctx.sessions() as session, session.begin():
                await notifier.enqueue(session, events, now)
        except Exception as exc:  # the database is what failed, most likely: log, carry on
            log.warning("breaker events could not be queued: %s", exc)
