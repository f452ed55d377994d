"""A cleanup run = lock → plan → (execute unless dry) → one report: for scheduler, API and CLI.

The report is stored on the run's ``cleanup_runs`` row, logged as one line with the run id, and
handed to every observer (the Prometheus metrics). Stages fail alone: a dead engine or a failing
stage makes the run ``partial`` and the others still run; only what committed is counted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from botfleet.cleanup import report as rpt
from botfleet.cleanup.execute import (
    Governor,
    Progress,
)
from botfleet.cleanup.lock import CleanupLock, lock_for
from botfleet.cleanup.plan import (
    Plan,
    parse_only,
)
from botfleet.cleanup.policy import Policy
from botfleet.cleanup.predicates import Dialect
from botfleet.cleanup.stages import PauseHook, Run, error_entry
from botfleet.cleanup.stages import is_database_error as is_database_error  # the scheduler's
from botfleet.config import Settings
from botfleet.constants import (
    RUN_ABANDONED,
    RUN_FAILED,
    RUN_RUNNING,
    TRIGGER_CLI,
    TRIGGER_MANUAL,
    TRIGGER_SCHEDULE,
)
from botfleet.errors import CleanupInProgress, InvalidInput, PlanNotFound
from botfleet.pagination import Page, PageRequest
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import CleanupRun
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

Observer = Callable[[dict[str, Any]], Any]
TRIGGERS = (TRIGGER_SCHEDULE, TRIGGER_MANUAL, TRIGGER_CLI)


def utcnow() -> datetime:
    return datetime.now(UTC)


class CleanupService:
    """One per process. ``run`` is the single entry point; the rest are read-only views."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        fleet: Fleet,
        observers: Sequence[Observer] = (),
        governor: Governor | None = None,
        clock: Callable[[], datetime] = utcnow,
        policy: Policy | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.fleet = fleet
        self.observers = list(observers)
        self.governor = governor
        self.policy = policy or Policy.from_settings(settings)
        self.clock = clock
        self.dialect = Dialect(postgres=not settings.is_sqlite)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.current_run_id: str | None = None
        self._stop = asyncio.Event()

    # --- control -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """End the current run after its batch (``partial``, ``interrupted``); if none is
        running, the next run stops at its first checkpoint. Consumed by the run it ends."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def _lock(self) -> CleanupLock:
        return lock_for(self.settings)

    async def _running_run_id(self) -> str | None:
        async with self.sessions() as session:
            run_id = await session.scalar(
                select(CleanupRun.id)
                .where(CleanupRun.status == RUN_RUNNING)
                .order_by(CleanupRun.started_at.desc())
                .limit(1)
            )
        return str(run_id) if run_id else None

    async def mark_abandoned(self) -> int:
        """Runs left ``running`` by a dead process become ``abandoned`` (at start-up). Only when
        this process can take the lock: otherwise another replica may really be running."""
        lock = self._lock()
        if not await lock.acquire():
            return 0
        try:
            return await self._abandon_stale()
        finally:
            await lock.release()

    async def _abandon_stale(self) -> int:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(CleanupRun)
                .where(CleanupRun.status == RUN_RUNNING)
                .values(status=RUN_ABANDONED, finished_at=self.clock())
                .returning(CleanupRun.id, CleanupRun.owner)
            )
            stale = result.all()
        for run_id, owner in stale:
            log.warning(
                "cleanup run %s (owner %s) was left running; marked abandoned", run_id, owner
            )
        return len(stale)

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
        started = self.clock()
        lock = self._lock()
        try:
            got = await lock.acquire()
        except Exception as exc:
            log.error("cleanup could not take its lock: %s", exc)
            report = self._bare_report(
                run_id, trigger, actor, dry_run, started, error_entry("lock", exc)
            )
            await self._notify(report)
            return report
        if not got:
            raise CleanupInProgress(await self._running_run_id())
        # The run's interval in cleanup_runs starts once it holds the lock: intervals of runs
        # never overlap (rule 5), and that is checkable from the table alone.
        started = self.clock()
        try:
            return await self._locked_run(
                run_id,
                lock,
                trigger,
                actor,
                dry_run,
                stages,
                stored,
                pause_hook,
                frozenset(skip_engines),
                progress,
                started,
            )
        finally:
            self._stop.clear()
            await lock.release()

    async def load_plan(self, plan_id: str | uuid.UUID) -> Plan:
        try:
            key = plan_id if isinstance(plan_id, uuid.UUID) else uuid.UUID(str(plan_id))
        except ValueError:
            raise InvalidInput(
                "plan_id", f"accepts a run id (UUID); got {str(plan_id)[:60]!r}"
            ) from None
        async with self.sessions() as session:
            row = await session.get(CleanupRun, key)
        if row is None or not row.dry_run or not row.plan:
            raise PlanNotFound(plan_id)
        plan = Plan.from_json(row.plan)
        if plan.instance != self.settings.botfleet_instance:
            raise InvalidInput(
                "plan_id",
                f"plan {plan_id} was made for instance {plan.instance!r}, "
                f"this is {self.settings.botfleet_instance!r}",
            )
        return plan

    def _bare_report(
        self,
        run_id: uuid.UUID,
        trigger: str,
        actor: str,
        dry_run: bool,
        started: datetime,
        error: dict[str, Any],
    ) -> dict[str, Any]:
        """A run that could not begin (database down): failed, with the reason, never stored."""
        return {
            "run_id": str(run_id),
            "plan_id": None,
            "dry_run": dry_run,
            "trigger": trigger,
            "actor": actor,
            "status": RUN_FAILED,
            "started_at": started.isoformat(),
            "finished_at": self.clock().isoformat(),
            "resources": {k: rpt.empty(k, rpt.FAILED) for k in rpt.CONTRACT_KINDS},
            "errors": [error],
            "stored": False,
        }

    async def _locked_run(
        self,
        run_id: uuid.UUID,
        lock: CleanupLock,
        trigger: str,
        actor: str,
        dry_run: bool,
        only: frozenset[str] | None,
        stored: Plan | None,
        pause_hook: PauseHook | None,
        skip_engines: frozenset[str],
        progress: Progress | None,
        started: datetime,
    ) -> dict[str, Any]:
        try:
            # We hold the lock, so nothing else is running: a `running` row is a dead one's.
            await self._abandon_stale()
            async with self.sessions() as session, session.begin():
                session.add(
                    CleanupRun(
                        id=run_id,
                        trigger=trigger,
                        actor=actor[:200],
                        dry_run=dry_run,
                        status=RUN_RUNNING,
                        started_at=started,
                        owner=self.owner,
                    )
                )
        except Exception as exc:
            log.error("cleanup could not record its run: %s", exc)
            report = self._bare_report(
                run_id, trigger, actor, dry_run, started, error_entry("run", exc)
            )
            await self._notify(report)
            return report
        self.current_run_id = str(run_id)
        run = Run(self, run_id, lock, actor, dry_run, only, stored, skip_engines, progress)
        try:
            resources, errors, fatal = await run.execute(pause_hook)
        except Exception as exc:
            # A bug or a failing pause hook: the run still ends with a stored report.
            log.exception("cleanup run %s failed unexpectedly", run_id)
            resources, errors, fatal = run.resources(), [*run.errors, error_entry("run", exc)], True
        except asyncio.CancelledError:
            # Cancelled from outside (a stop that timed out): record what is known, then go.
            errors = [*run.errors, {"stage": "run", "message": "cancelled"}]
            report = self._report(run, trigger, actor, dry_run, started, run.resources(), errors)
            report["status"] = rpt.status_of(
                (r["outcome"] for r in report["resources"].values()), fatal=True
            )
            await asyncio.shield(self._finish(run_id, report, run.plan))
            self.current_run_id = None
            raise
        finally:
            await asyncio.shield(run.close())
        report = self._report(run, trigger, actor, dry_run, started, resources, errors)
        report["status"] = rpt.status_of((r["outcome"] for r in resources.values()), fatal=fatal)
        stored_ok = await self._finish(run_id, report, run.plan)
        if not stored_ok:
            report["stored"] = False
        self.current_run_id = None
        log.info(
            "cleanup run %s %s%s: %s",
            run_id,
            report["status"],
            " (dry run)" if dry_run else "",
            rpt.summary_line(report),
            # The whole report is stored and served (GET /admin/cleanup/runs/{id}); the line
            # carries what an operator scans logs for.
            extra={"run_id": str(run_id), "status": report["status"], "trigger": trigger},
        )
        await self._notify(report)
        return report

    def _report(
        self,
        run: Run,
        trigger: str,
        actor: str,
        dry_run: bool,
        started: datetime,
        resources: dict[str, dict[str, Any]],
        errors: list[dict[str, Any]],
    ) -> dict[str, Any]:
        return {
            "run_id": str(run.run_id),
            "plan_id": run.plan.id if run.plan else None,
            "dry_run": dry_run,
            "trigger": trigger,
            "actor": actor,
            "status": None,  # set by the caller, which knows whether the run ended early
            "started_at": started.isoformat(),
            "finished_at": self.clock().isoformat(),
            "instance": self.settings.botfleet_instance,
            "resources": resources,
            "errors": errors,
        }

    async def _finish(self, run_id: uuid.UUID, report: dict[str, Any], plan: Plan | None) -> bool:
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(
                    update(CleanupRun)
                    .where(CleanupRun.id == run_id)
                    .values(
                        status=report["status"],
                        finished_at=datetime.fromisoformat(report["finished_at"]),
                        report=report,
                        plan=plan.to_json() if plan else None,
                    )
                )
        except Exception as exc:
            # The next start-up marks the row abandoned; the report still goes out.
            log.error("cleanup run %s: storing the report failed: %s", run_id, exc)
            report["errors"].append(error_entry("report", exc))
            return False
        return True

    async def _notify(self, report: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                result = observer(report)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("cleanup observer %r failed; the run is unaffected", observer)

    # --- read-only views -----------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        from botfleet.cleanup.history import last_report

        s = self.settings
        async with self.sessions() as session:
            last = await last_report(session)
        return {
            "enabled": s.cleanup_enabled,
            "dry_run": s.cleanup_dry_run,
            "container_cleanup_enabled": s.container_cleanup_enabled,
            "retention_days": s.bot_retention_days,
            "result_retention_days": s.result_retention_days,
            "interval_hours": s.cleanup_interval_hours,
            "grace_minutes": s.container_cleanup_grace_minutes,
            "batch_size": s.cleanup_batch_size,
            "max_deletions": s.cleanup_max_deletions,
            "policy_rules": len(self.policy.rules),
            "instance": s.botfleet_instance,
            "engines": self.fleet.names,
            "running": await self._running_run_id(),
            "last_run": last,
            "next_run_at": None,
        }

    async def orphans(self, *, limit: int = 100) -> dict[str, Any]:
        """What is orphaned now, per kind, with what protects the rest (reason and age)."""
        from botfleet.cleanup.history import orphans_view

        return await orphans_view(self, limit=limit)

    async def runs(self, page: PageRequest, *, status: str | None = None) -> Page[dict[str, Any]]:
        """Run history, newest first."""
        from botfleet.cleanup.history import runs_page

        async with self.sessions() as session:
            return await runs_page(session, page, status=status)

    async def get_run(self, run_id: uuid.UUID, audit: PageRequest) -> dict[str, Any]:
        """One run's report and plan, with a page of its audit records."""
        from botfleet.cleanup.history import run_detail

        async with self.sessions() as session:
            return await run_detail(session, run_id, audit)
