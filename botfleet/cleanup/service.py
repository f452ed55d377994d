"""A cleanup run = lock → plan → (execute unless dry) → one report: for scheduler, API and CLI.

The report is stored on the run's ``cleanup_runs`` row, logged as one line with the run id, and
handed to every observer (the Prometheus metrics). Stages fail alone: a dead engine or a failing
stage makes the run ``partial`` and the others still run; only what committed is counted. The
run itself (:mod:`botfleet.cleanup.run`) is handed a :class:`~botfleet.cleanup.context.
RunContext` and a :class:`~botfleet.cleanup.plan.Plan`, never this service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from botfleet.archive.writer import Archive, archive_for
from botfleet.cleanup.context import Progress, RunContext, RunLimits, RunRequest
from botfleet.cleanup.explain import explain
from botfleet.cleanup.explain_facts import read_facts
from botfleet.cleanup.failures import error_entry
from botfleet.cleanup.lock import CleanupLock, lock_for
from botfleet.cleanup.notices import purge_warnings, tidy_outbox
from botfleet.cleanup.orphans import orphans_view
from botfleet.cleanup.plan import Plan, parse_only
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.report import bare_report, run_report, summary_line
from botfleet.cleanup.run import PauseHook, Run
from botfleet.cleanup.run_history import run_detail, runs_page, status_view
from botfleet.cleanup.run_records import (
    abandon_stale,
    finish_run,
    load_plan,
    record_run,
    running_run_id,
)
from botfleet.cleanup.simulate import simulate
from botfleet.cleanup.timing import FixedBatch, Governor
from botfleet.config import Settings
from botfleet.constants import TRIGGER_CLI, TRIGGER_MANUAL, TRIGGER_SCHEDULE
from botfleet.errors import CleanupInProgress, InvalidInput
from botfleet.notify.events import breaker_changed, run_finished
from botfleet.notify.outbox import Notifier
from botfleet.pagination import Page, PageRequest
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import utcnow
from botfleet.store.session import create_session_factory

log = logging.getLogger(__name__)

Observer = Callable[[Mapping[str, Any]], None]
TRIGGERS = (TRIGGER_SCHEDULE, TRIGGER_MANUAL, TRIGGER_CLI)


class CleanupService:
    """One per process. ``run`` is the single entry point; the rest are read-only views."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: AsyncEngine,
        fleet: Fleet,
        observers: Sequence[Observer] = (),
        governor: Governor | None = None,
        clock: Callable[[], datetime] = utcnow,
        policy: Policy | None = None,
        archive: Archive | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """``archive``: where purge batches are archived first; without one, the settings'
        CLEANUP_ARCHIVE_DIR (if set) — so no caller (the CLI, ``schedule --once``) can purge
        without the archive the operator configured. ``notifier``: where a real run's events
        go (NOTIFY_WEBHOOK_URLS), written to the outbox, never sent by the run itself."""
        self.settings = settings
        self.observers = list(observers)
        self.policy = policy or Policy.from_settings(settings)
        self.ctx = RunContext(
            db=db,
            sessions=create_session_factory(db),
            fleet=fleet,
            dialect=Dialect(postgres=not settings.is_sqlite),
            clock=clock,
            # Without the scheduler's adaptive governor: CLEANUP_BATCH_SIZE, always.
            governor=governor or FixedBatch(settings.cleanup_batch_size),
            stop=asyncio.Event(),
            limits=RunLimits.from_settings(settings),
            archive=archive or archive_for(settings),
        )
        self.notifier = notifier
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.current_run_id: str | None = None

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ctx.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        """A new clock for the runs to come (a test freezing time); a run in progress keeps
        the context it was handed."""
        self.ctx = replace(self.ctx, clock=clock)

    # --- control -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """End the current run after its batch (``partial``, ``interrupted``); if none is
        running, the next run stops at its first checkpoint. Consumed by the run it ends."""
        self.ctx.stop.set()

    @property
    def stop_requested(self) -> bool:
        return self.ctx.stop.is_set()

    def _lock(self) -> CleanupLock:
        return lock_for(self.settings)

    async def mark_abandoned(self) -> int:
        """Runs left ``running`` by a dead process become ``abandoned`` (at start-up). Only when
        this process can take the lock: otherwise another replica may really be running."""
        lock = self._lock()
        if not await lock.acquire():
            return 0
        try:
            return await abandon_stale(self.ctx.sessions, self.clock())
        finally:
            await lock.release()

    # --- a run ---------------------------------------------------------------------------------
    async def run(
        self,
        *,
        trigger: str,
        actor: str,
        dry_run: bool,
        only: str | Iterable[str] | None = None,
        plan_id: str | uuid.UUID | None = None,
        pause_hook: PauseHook | None = None,
        skip_engines: Collection[str] = frozenset(),
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Run a cleanup and return its report. :class:`CleanupInProgress` if one is running
        anywhere; :class:`InvalidInput` / :class:`PlanNotFound` for bad arguments."""
        if trigger not in TRIGGERS:
            raise InvalidInput("trigger", f"accepts {', '.join(TRIGGERS)}; got {trigger!r}")
        stages = parse_only(only)
        stored = await self.load_plan(plan_id) if plan_id is not None else None
        run_id = uuid.uuid4()
        request = RunRequest(
            run_id,
            trigger,
            actor,
            dry_run,
            self.clock(),
            only=stages,
            skip_engines=frozenset(skip_engines),
            progress=progress,
        )
        lock = self._lock()
        try:
            got = await lock.acquire()
        except Exception as exc:
            log.error("cleanup could not take its lock: %s", exc)
            return self._not_begun(request, error_entry("lock", exc))
        if not got:
            raise CleanupInProgress(await running_run_id(self.ctx.sessions))
        # The run's interval in cleanup_runs starts once it holds the lock: intervals of runs
        # never overlap (rule 5), and that is checkable from the table alone.
        request.started = self.clock()
        try:
            return await self._locked_run(request, lock, stored, pause_hook)
        finally:
            self.ctx.stop.clear()
            await lock.release()

    async def load_plan(self, plan_id: str | uuid.UUID) -> Plan:
        """A stored dry run's plan (:func:`~botfleet.cleanup.run_records.load_plan`)."""
        return await load_plan(self.ctx.sessions, plan_id, self.settings.botfleet_instance)

    def _not_begun(self, request: RunRequest, error: dict[str, Any]) -> dict[str, Any]:
        report = bare_report(
            run_id=request.run_id,
            dry_run=request.dry_run,
            trigger=request.trigger,
            actor=request.actor,
            started=request.started,
            finished=self.clock(),
            error=error,
        )
        self._notify(report)
        return report

    async def _locked_run(
        self,
        request: RunRequest,
        lock: CleanupLock,
        stored: Plan | None,
        pause_hook: PauseHook | None,
    ) -> dict[str, Any]:
        run_id = request.run_id
        try:
            # We hold the lock, so nothing else is running: a `running` row is a dead one's.
            await abandon_stale(self.ctx.sessions, self.clock())
            await record_run(self.ctx.sessions, request, self.owner)
        except Exception as exc:
            log.error("cleanup could not record its run: %s", exc)
            return self._not_begun(request, error_entry("run", exc))
        self.current_run_id = str(run_id)
        plan = stored or Plan.fresh(
            str(run_id),
            now=self.clock(),
            instance=self.settings.botfleet_instance,
            policy=self.policy,
        )
        run = Run(self.ctx, plan, request, lock)
        try:
            fatal = await run.execute(pause_hook)
        except Exception as exc:
            # A bug or a failing pause hook: the run still ends with a stored report.
            log.exception("cleanup run %s failed unexpectedly", run_id)
            run.found.errors.append(error_entry("run", exc))
            fatal = True
        except asyncio.CancelledError:
            # Cancelled from outside (a stop that timed out): record what is known, then go.
            run.found.errors.append({"stage": "run", "message": "cancelled"})
            report = self._report(request, run, fatal=True)
            await asyncio.shield(self._finish(run_id, report, run.made))
            self.current_run_id = None
            raise
        finally:
            await asyncio.shield(run.close())
        if not request.dry_run:
            await self._notices(run)
        report = self._report(request, run, fatal=fatal)
        archived = await asyncio.to_thread(run.seal_archive, report["status"])
        if archived is not None:
            report["archive"] = archived
        if not await self._finish(run_id, report, run.made, notify=not request.dry_run):
            report["stored"] = False
        self.current_run_id = None
        log.info(
            "cleanup run %s %s%s: %s",
            run_id,
            report["status"],
            " (dry run)" if request.dry_run else "",
            summary_line(report),
            # The whole report is stored and served (GET /admin/cleanup/runs/{id}); the line
            # carries what an operator scans logs for.
            extra={"run_id": str(run_id), "status": report["status"], "trigger": request.trigger},
        )
        self._notify(report)
        return report

    def _report(self, request: RunRequest, run: Run, *, fatal: bool) -> dict[str, Any]:
        return run_report(
            run_id=request.run_id,
            plan_id=run.made.id if run.made else None,
            dry_run=request.dry_run,
            trigger=request.trigger,
            actor=request.actor,
            started=request.started,
            finished=self.clock(),
            instance=self.settings.botfleet_instance,
            resources=run.resources(),
            errors=list(run.found.errors),
            fatal=fatal,
        )

    async def _notices(self, run: Run) -> None:
        """Purge warnings queued and the outbox tidied; never a reason for a run to fail."""
        now = self.clock()
        notifier = self.notifier
        try:
            if notifier is not None:
                warned = await purge_warnings(self.ctx, self.policy, notifier, now)
                if warned:
                    log.info("cleanup queued %d purge warning(s)", warned)
            await tidy_outbox(self.ctx, now, notifier.before_purge if notifier else None)
        except Exception as exc:
            log.warning("cleanup run %s: notices failed: %s", run.run_id, exc)
            run.found.errors.append({"stage": "notify", "message": f"notices failed: {exc}"})

    async def _finish(
        self, run_id: uuid.UUID, report: dict[str, Any], plan: Plan | None, *, notify: bool = False
    ) -> bool:
        enqueue = self._run_finished(run_id, report) if notify else None
        try:
            await finish_run(self.ctx.sessions, run_id, report, plan, enqueue)
        except Exception as exc:
            # The next start-up marks the row abandoned; the report still goes out.
            log.error("cleanup run %s: storing the report failed: %s", run_id, exc)
            report["errors"].append(error_entry("report", exc))
            return False
        return True

    def _run_finished(
        self, run_id: uuid.UUID, report: dict[str, Any]
    ) -> Callable[[AsyncSession], Awaitable[None]] | None:
        """Writes the run's ``run.finished`` event in the report's transaction."""
        notifier = self.notifier
        if notifier is None:
            return None

        async def enqueue(session: AsyncSession) -> None:
            now = self.clock()
            link = notifier.link(f"/admin/cleanup/runs/{run_id}")
            event = run_finished(report, source=notifier.source, link=link, time=now)
            await notifier.enqueue(session, [event], now)

        return enqueue

    async def breakers_changed(self, changes: Sequence[tuple[str, str, str | None]]) -> None:
        """(dependency, new state, last error) of breakers that opened or closed: their events,
        in a transaction of their own (a breaker lives in memory, nothing else to write)."""
        notifier = self.notifier
        if notifier is None or not changes:
            return
        now = self.clock()
        events = [
            breaker_changed(name, state, last_error=error, source=notifier.source, time=now)
            for name, state, error in changes
        ]
        try:
            async with self.ctx.sessions() as session, session.begin():
                await notifier.enqueue(session, events, now)
        except Exception as exc:  # the database is what failed, most likely: log, carry on
            log.warning("breaker events could not be queued: %s", exc)

    def _notify(self, report: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(report)
            except Exception:
                log.exception("cleanup observer %r failed; the run is unaffected", observer)

    # --- read-only views -----------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """Mode, retention, limits, the running run and the last report."""
        return await status_view(
            self.ctx.sessions,
            self.settings,
            policy_rules=len(self.policy.rules),
            engines=self.ctx.fleet.names,
        )

    async def orphans(self, *, limit: int = 100) -> dict[str, Any]:
        """What is orphaned now, per kind, with what protects the rest (reason and age)."""
        return await orphans_view(self.ctx, self.policy, limit=limit)

    async def explain(self, bot_id: uuid.UUID) -> dict[str, Any]:
        """Which rule applies to the bot, why, and when each of its resources is due
        (:class:`~botfleet.errors.BotNotFound` if there is no such row)."""
        facts = await read_facts(self.ctx.sessions, bot_id)
        return explain(facts, self.policy, self.clock())

    async def simulate(self, policy: Policy) -> dict[str, Any]:
        """The plan ``policy`` would make now, for the stages a policy decides; saved nowhere."""
        return await simulate(self.ctx, policy)

    async def runs(self, page: PageRequest, *, status: str | None = None) -> Page[dict[str, Any]]:
        """Run history, newest first."""
        async with self.ctx.sessions() as session:
            return await runs_page(session, page, status=status)

    async def get_run(self, run_id: uuid.UUID, audit: PageRequest) -> dict[str, Any]:
        """One run's report and plan, with a page of its audit records."""
        async with self.ctx.sessions() as session:
            return await run_detail(session, run_id, audit)
