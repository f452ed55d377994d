"""One run: select every stage under its plan, then (unless dry) execute the stages in order.

Stages fail alone: an error is recorded against its stage and the next stage still runs; a stop
request or a lost lock ends the run between batches. What each stage found, removed, skipped and
how it ended is kept in :class:`~botfleet.cleanup.report.Findings`, from which the report is made.
A dry run is the same road with the deletions left out, decided in :meth:`Run.execute` alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import text

from botfleet.cleanup.archiving import RunArchiving
from botfleet.cleanup.batches import BatchLoop, Tally
from botfleet.cleanup.bot_lookup import explain_kept_bots
from botfleet.cleanup.container_removal import remove_containers
from botfleet.cleanup.context import RunContext, RunRequest, StageContext
from botfleet.cleanup.failures import Interrupted, error_entry, is_database_error
from botfleet.cleanup.idle_bots import IdleBotsStage
from botfleet.cleanup.lock import CleanupLock
from botfleet.cleanup.plan import Plan
from botfleet.cleanup.purge_bots import BotPurge
from botfleet.cleanup.purge_results import ResultPurge
from botfleet.cleanup.quota_purge import QuotaPurge, measure_budget
from botfleet.cleanup.quota_terms import BudgetBoundary
from botfleet.cleanup.refusals import refusal as refusal_of
from botfleet.cleanup.report import (
    DONE,
    FAILED,
    INTERRUPTED,
    PARTIAL,
    PLANNED,
    REFUSED,
    report_kinds,
    resources,
)
from botfleet.cleanup.run_records import store_plan
from botfleet.cleanup.stage_selection import StageSelector, stages_taken
from botfleet.cleanup.storage import stage_store_bytes
from botfleet.constants import (
    DEPENDENCY_DATABASE,
    KIND_BOTS,
    KIND_IDLE_BOTS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
    KIND_SERVICES,
    REASON_INTERRUPTED,
    REASON_REFUSED,
    WORKLOAD_KINDS,
)
from botfleet.errors import LockLost

log = logging.getLogger(__name__)

PauseHook = Callable[[], Awaitable[Any]]


class Run:
    """One run's state between selection and report; lives only inside the service's run."""

    def __init__(self, ctx: RunContext, plan: Plan, request: RunRequest, lock: CleanupLock) -> None:
        self.ctx = ctx
        self.plan = plan
        self.run_id = request.run_id
        self.lock = lock
        self.dry_run = request.dry_run
        self.skip_engines = request.skip_engines
        self.stage = StageContext(
            ctx,
            request.run_id,
            request.actor,
            plan.policy,
            plan.now,
            self.checkpoint,
            request.progress,
        )
        self.made: Plan | None = None  # the plan as this run's selection made it
        self.archiving = RunArchiving(ctx, request.run_id, request.actor)
        self.found = stages_taken(plan, request.only, ctx)
        self.selector = StageSelector(ctx, plan, self.found, self.run_id, self.skip_engines)

    async def checkpoint(self) -> None:
        """Before every batch: a stop request ends the run here; a lost lock ends it too."""
        if self.ctx.stop.is_set():
            raise Interrupted()
        if not await self.lock.still_held():
            raise LockLost()

    # --- selection -----------------------------------------------------------------------------
    async def select(self) -> Plan:
        """Every stage's selection; the plan it makes is stored before anything is deleted."""
        await self.checkpoint()
        self.made = await self.selector.select()
        await self._store_plan(self.made)
        return self.made

    async def close(self) -> None:
        """Drop this run's orphan table (PostgreSQL), if selection made one."""
        table, self.selector.orphan_table = self.selector.orphan_table, None
        if table is None:
            return
        try:
            async with self.ctx.sessions() as session, session.begin():
                await session.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        except Exception as exc:  # the next run drops it (drop_orphan_tables)
            log.warning("dropping the orphan table %s failed: %s", table, exc)

    async def _store_plan(self, plan: Plan) -> None:
        """Stored before anything is deleted: a crash mid-run still shows what was meant."""
        try:
            await store_plan(self.ctx.sessions, self.run_id, plan)
        except Exception as exc:
            log.warning("cleanup run %s: storing the plan failed: %s", self.run_id, exc)

    # --- execution -----------------------------------------------------------------------------
    async def execute(self, pause_hook: PauseHook | None) -> bool:
        """Select, then run each stage that may delete; True when the run ended fatally."""
        found = self.found
        try:
            made = await self.select()
            if pause_hook is not None:
                await pause_hook()
            if not self.dry_run and not await self._open_archive():
                return False
            for kind in found.stages:
                if found.outcomes.get(kind) == FAILED:
                    continue
                refusal = refusal_of(
                    kind, found, cap=self.ctx.limits.max_deletions, ceilings=self.plan.ceilings
                )
                if refusal is not None:
                    found.outcomes[kind] = REFUSED
                    found.errors.append(
                        {"stage": kind, "reason": REASON_REFUSED, "message": refusal}
                    )
                    continue
                if self.dry_run:
                    found.outcomes[kind] = (
                        self._workload_outcome(kind, PLANNED) if kind in WORKLOAD_KINDS else PLANNED
                    )
                    continue
                await self.checkpoint()
                await self._execute_stage(kind, made.max_result_id)
        except Interrupted:
            self._interrupt("stop requested; ended after the current batch")
        except LockLost as exc:
            self._interrupt(str(exc), dependency=True)
            return True
        return False

    async def _open_archive(self) -> bool:
        """The run's archive opened (if configured) before anything is deleted; False when
        it cannot be written: no archive, no delete."""
        if not await self.archiving.open(self.found):
            return False
        if self.archiving.opened is not None:
            self.stage = replace(self.stage, archive=self.archiving.opened)
        return True

    def seal_archive(self, status: str) -> dict[str, Any] | None:
        """The run's manifest written; what the report says of the archive (None: none)."""
        return self.archiving.seal(status)

    def _interrupt(self, message: str, *, dependency: bool = False) -> None:
        first = True
        for kind in self.found.stages:
            # The stage that was cut short (already marked) and every stage not yet run.
            if self.found.outcomes.get(kind, INTERRUPTED) != INTERRUPTED:
                continue
            self.found.outcomes[kind] = INTERRUPTED
            if first:
                error: dict[str, Any] = {
                    "stage": kind,
                    "reason": REASON_INTERRUPTED,
                    "message": message,
                }
                if dependency:
                    error["dependency"] = DEPENDENCY_DATABASE
                self.found.errors.append(error)
                first = False

    def _workload_outcome(self, kind: str, clean: str) -> str:
        sel = self.selector.workloads.get(kind)
        if sel is None:
            return clean
        names = list(self.ctx.fleet.of_kind(kind))
        engines = [n for n in names if n not in self.skip_engines]
        failed = {e.get("engine") for e in sel.errors}
        if engines and failed >= set(engines):
            return FAILED
        if sel.errors or (self.skip_engines & set(names)):
            return PARTIAL
        return clean

    async def _execute_stage(self, kind: str, max_id: int) -> None:
        tally = self.found.tallies.setdefault(kind, Tally())
        loop = BatchLoop(self.stage)
        limit = self.found.selections[kind].found
        before = await stage_store_bytes(self.ctx.sessions, self.ctx.dialect, kind)
        started = time.perf_counter()
        try:
            if kind == KIND_BOTS:
                await BotPurge(loop).purge_bots(tally, limit)
                await explain_kept_bots(
                    self.ctx.sessions,
                    self.found.selections[KIND_BOTS],
                    tally,
                    self.plan.policy,
                    self.ctx.clock(),
                )
            elif kind == KIND_IDLE_BOTS:
                await IdleBotsStage(loop).soft_delete(tally, limit)
            elif kind == KIND_RESULTS:
                await ResultPurge(loop).purge_results(tally, limit, max_id)
            elif kind == KIND_RESULTS_OVER_QUOTA:
                boundary = BudgetBoundary.from_json(
                    self.made.budget_boundary if self.made else None
                )
                await QuotaPurge(loop).purge(tally, limit, max_id, boundary)
                await measure_budget(
                    self.ctx.sessions, self.plan.policy, self.found.extra.get(kind, {})
                )
            elif kind == KIND_ORPHANED_RESULTS:
                await ResultPurge(loop).purge_orphaned_results(
                    tally, limit, max_id, table=self.selector.orphan_table
                )
            else:
                await self._remove_workloads(kind, tally, limit)
        except (Interrupted, LockLost):
            self.found.outcomes[kind] = INTERRUPTED
            raise
        except Exception as exc:
            if not is_database_error(exc):
                log.exception("cleanup stage %s failed", kind)
            self.found.errors.append(error_entry(kind, exc))
            self.found.outcomes[kind] = FAILED
        finally:
            took = time.perf_counter() - started
            self.found.durations[kind] = self.found.durations.get(kind, 0.0) + took
        if before is not None:  # not after a stop: the run ends at once
            await self._measure_recovered(kind, tally, before)
        self.found.outcomes.setdefault(kind, DONE)

    async def _measure_recovered(self, kind: str, tally: Tally, before: int) -> None:
        """The store's size after the stage beside its size before (cleanup/storage.py); on
        SQLite the pages it handed back are what it recovered."""
        after = await stage_store_bytes(self.ctx.sessions, self.ctx.dialect, kind)
        if after is None:
            return
        self.found.extra.setdefault(kind, {}).update(
            store_bytes_before=before, store_bytes_after=after
        )
        if not self.ctx.dialect.postgres:
            tally.bytes_reclaimed = max(0, before - after)

    async def _remove_workloads(self, kind: str, tally: Tally, limit: int) -> None:
        selected = self.selector.workloads.get(kind)
        await remove_containers(
            self.stage,
            self.ctx.fleet,
            selected.targets if selected else [],
            tally,
            kind=kind,
            instance=self.ctx.limits.instance,
            concurrency=self.ctx.limits.container_concurrency,
            limit=limit,
        )
        self.found.errors.extend(tally.errors)
        outcome = self._workload_outcome(kind, DONE)
        if outcome == DONE and (tally.errors or tally.failed):
            outcome = PARTIAL
        self.found.outcomes[kind] = outcome

    def resources(self) -> dict[str, dict[str, Any]]:
        return resources(
            self.found,
            kinds=report_kinds(
                results=self.plan.policy.results_stage_enabled,
                services=bool(self.ctx.fleet.of_kind(KIND_SERVICES)),
                idle=self.plan.policy.idle_stage_enabled,
                quota=self.plan.policy.quota_stage_enabled,
            ),
            ceilings=self.plan.ceilings,
        )
