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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet.archive.writer import Archive, archive_for
from botfleet.cleanup.context import Progress, RunContext, RunLimits, RunRequest
from botfleet.cleanup.failures import error_entry
from botfleet.cleanup.lock import CleanupLock, lock_for
from botfleet.cleanup.plan import Plan, parse_only
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.report import bare_report, run_report, summary_line
from botfleet.cleanup.run import PauseHook, Run
from botfleet.cleanup.run_notices import RunNotices
from botfleet.cleanup.run_records import (
    abandon_stale,
    finish_run,
    load_plan,
    record_run,
    running_run_id,
)
from botfleet.cleanup.timing import FixedBatch, Governor
from botfleet.cleanup.views import CleanupViews
from botfleet.config import Settings
from botfleet.constants import TRIGGER_CLI, TRIGGER_MANUAL, TRIGGER_SCHEDULE
from botfleet.errors import CleanupInProgress, InvalidInput
from botfleet.notify.outbox import Notifier
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import utcnow
from botfleet.store.session import create_session_factory

log = logging.getLogger(__name__)

Observer = Callable[[Mapping[str, Any]], None]
TRIGGERS = (TRIGGER_SCHEDULE, TRIGGER_MANUAL, TRIGGER_CLI)


class CleanupService(CleanupViews):
    """One per process. ``run`` is the single entry point; the rest are read-only views
    (:class:`~botfleet.cleanup.views.CleanupViews`)."""

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
            notifier=notifier,
        )
        self.notices = RunNotices(notifier)
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
            failed = await self.notices.after_run(self.ctx, self.policy)
            if failed is not None:
                log.warning("cleanup run %s: %s", run_id, failed)
                run.found.errors.append({"stage": "notify", "message": failed})
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

    async def _finish(
        self, run_id: uuid.UUID, report: dict[str, Any], plan: Plan | None, *, notify: bool = False
    ) -> bool:
        enqueue = self.notices.run_finished(self.ctx, run_id, report) if notify else None
        try:
            await finish_run(self.ctx.sessions, run_id, report, plan, enqueue)
        except Exception as exc:
            # The next start-up marks the row abandoned; the report still goes out.
            log.error("cleanup run %s: storing the report failed: %s", run_id, exc)
            report["errors"].append(error_entry("report", exc))
            return False
        return True

    async def breakers_changed(self, changes: Sequence[tuple[str, str, str | None]]) -> None:
        """Breakers that opened or closed (the scheduler's): their events queued."""
        await self.notices.breakers_changed(self.ctx, changes)

    def _notify(self, report: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(report)
            except Exception:
                log.exception("cleanup observer %r failed; the run is unaffected", observer)
