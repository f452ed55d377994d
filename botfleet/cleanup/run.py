"""One run: select every stage under its plan, then (unless dry) execute the stages in order.

Stages fail alone: an error is recorded against its stage and the next stage still runs; a stop
request or a lost lock ends the run between batches. What each stage found, removed, skipped and
how it ended is kept in :class:`~botfleet.cleanup.report.Findings`, from which the report is made.
A dry run is the same road with the deletions left out, decided in :meth:`Run.execute` alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import text

from botfleet.archive.upkeep import Tidied, tidy
from botfleet.archive.writer import ArchiveUnavailable, RunArchive
from botfleet.cleanup.batches import BatchLoop, Tally
from botfleet.cleanup.bot_lookup import bot_records
from botfleet.cleanup.container_removal import remove_containers
from botfleet.cleanup.context import RunContext, RunRequest, StageContext
from botfleet.cleanup.eligibility import bot_purge_decision
from botfleet.cleanup.failures import Interrupted, error_entry, is_database_error
from botfleet.cleanup.idle_bots import IdleBotsStage
from botfleet.cleanup.lock import CleanupLock
from botfleet.cleanup.plan import STAGES, Plan
from botfleet.cleanup.purge_bots import BotPurge
from botfleet.cleanup.purge_results import ResultPurge
from botfleet.cleanup.quota_purge import QuotaPurge, measure_after
from botfleet.cleanup.quota_selection import BudgetBoundary
from botfleet.cleanup.report import (
    DISABLED,
    DONE,
    FAILED,
    INTERRUPTED,
    NOT_SELECTED,
    PARTIAL,
    PLANNED,
    REFUSED,
    Findings,
    report_kinds,
    resources,
)
from botfleet.cleanup.run_records import store_plan
from botfleet.cleanup.stage_selection import StageSelector
from botfleet.constants import (
    DEPENDENCY_ARCHIVE,
    DEPENDENCY_DATABASE,
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_CONTAINERS,
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

# The stages whose batches are archived (CLEANUP_ARCHIVE_DIR): the database's purges (idle_bots
# only soft-deletes: nothing leaves the store).
ARCHIVED_KINDS = frozenset(
    {KIND_BOTS, KIND_RESULTS, KIND_ORPHANED_RESULTS, KIND_RESULTS_OVER_QUOTA}
)

log = logging.getLogger(__name__)

PauseHook = Callable[[], Awaitable[Any]]


def _findings(plan: Plan, only: frozenset[str] | None, ctx: RunContext) -> Findings:
    """The stages this run takes, in order; the others are marked disabled or not selected.
    The engines' workloads go as the engines have them: containers on plain engines, services
    on a swarm (CONTAINER_CLEANUP_ENABLED turns both off)."""
    workloads = ctx.limits.containers_enabled
    swarm = bool(ctx.fleet.of_kind(KIND_SERVICES))
    enabled = {
        KIND_BOTS: True,
        KIND_IDLE_BOTS: plan.policy.idle_stage_enabled,
        KIND_RESULTS: plan.policy.results_stage_enabled,
        KIND_RESULTS_OVER_QUOTA: plan.policy.quota_stage_enabled,
        KIND_ORPHANED_RESULTS: True,
        KIND_CONTAINERS: workloads and not swarm,
        KIND_SERVICES: workloads and swarm,
    }
    found = Findings(stages=[])
    for kind in STAGES:
        if not enabled[kind]:
            found.outcomes[kind] = DISABLED
        elif (only is not None and kind not in only) or kind not in plan.stages:
            found.outcomes[kind] = NOT_SELECTED
        else:
            found.stages.append(kind)
    return found


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
        self.archive: RunArchive | None = None  # opened before the first archived purge
        self.tidied: Tidied | None = None
        self.found = _findings(plan, request.only, ctx)
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
    def _refusal(self, kind: str) -> str | None:
        """Why a stage must delete nothing: over the cap, or the plan no longer holds."""
        cap = self.ctx.limits.max_deletions
        selections = self.found.selections
        for k in [kind, KIND_BOT_RESULTS] if kind == KIND_BOTS else [kind]:
            found = selections[k].found
            if cap is not None and found > cap:
                self.found.extra.setdefault(k, {})["capped"] = True
                return (
                    f"{k}: {found} to delete exceeds CLEANUP_MAX_DELETIONS={cap}; "
                    "this stage deleted nothing"
                )
        planned = self.plan.ceilings.get(kind)
        found = selections[kind].found
        if planned is not None and found > planned:
            return (
                f"{kind}: {found} items match now but the plan had {planned}; "
                "refusing to delete more than planned"
            )
        return None

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
                refusal = self._refusal(kind)
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
        """With CLEANUP_ARCHIVE_DIR, open this run's archive before anything is deleted, then
        tidy what earlier runs left. False, with every database stage failed, when it cannot
        be written: no archive, no delete (design.md, safety rule 8)."""
        archive = self.ctx.archive
        if archive is None or not ARCHIVED_KINDS & set(self.found.stages):
            return True
        try:
            opened = await asyncio.to_thread(
                archive.open_run, self.run_id, self.stage.actor, self.ctx.clock
            )
        except ArchiveUnavailable as exc:
            for kind in self.found.stages:
                if kind in ARCHIVED_KINDS:
                    self.found.outcomes[kind] = FAILED
            self.found.errors.append(
                {"stage": "archive", "message": str(exc), "dependency": DEPENDENCY_ARCHIVE}
            )
            return False
        self.archive = opened
        self.stage = replace(self.stage, archive=opened)
        try:
            self.tidied = await tidy(
                archive, self.ctx.sessions, current=str(self.run_id), now=self.ctx.clock()
            )
        except Exception as exc:  # tidying is for later runs too: never a reason to stop
            log.warning("cleanup run %s: tidying the archive failed: %s", self.run_id, exc)
            self.found.errors.append({"stage": "archive", "message": f"tidying failed: {exc}"})
        return True

    def seal_archive(self, status: str) -> dict[str, Any] | None:
        """The run's manifest written; what the report says of the archive (None: none)."""
        if self.archive is None:
            return None
        try:
            self.archive.seal(status=status, finished=self.ctx.clock())
        except OSError as exc:  # the files are durable; only the summary is missing
            log.warning("cleanup run %s: sealing the archive failed: %s", self.run_id, exc)
        summary = self.archive.summary()
        if self.tidied is not None:
            summary |= self.tidied.as_json()
        return summary

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
        started = time.perf_counter()
        try:
            if kind == KIND_BOTS:
                await BotPurge(loop).purge_bots(tally, limit)
                await self._explain_kept_bots(tally)
            elif kind == KIND_IDLE_BOTS:
                await IdleBotsStage(loop).soft_delete(tally, limit)
            elif kind == KIND_RESULTS:
                await ResultPurge(loop).purge_results(tally, limit, max_id)
            elif kind == KIND_RESULTS_OVER_QUOTA:
                boundary = BudgetBoundary.from_json(
                    self.made.budget_boundary if self.made else None
                )
                await QuotaPurge(loop).purge(tally, limit, max_id, boundary)
                await self._measure_budget()
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
        self.found.outcomes.setdefault(kind, DONE)

    async def _measure_budget(self) -> None:
        """How far over the budget the store is after the quota stage (the report's after)."""
        budget = self.found.extra.get(KIND_RESULTS_OVER_QUOTA, {}).get("budget")
        if budget is None or self.plan.policy.results_budget is None:
            return
        async with self.ctx.sessions() as session:
            budget.update(await measure_after(session, self.plan.policy, budget))

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

    async def _explain_kept_bots(self, tally: Tally) -> None:
        """Fewer bots went than were found: name the sampled ones that stayed, and why."""
        selection = self.found.selections[KIND_BOTS]
        if tally.deleted >= selection.found or not selection.sample:
            return
        still = await bot_records(self.ctx.sessions, selection.sample)
        for bot in still.values():
            decision = bot_purge_decision(bot, self.plan.policy, self.ctx.clock())
            reason = "restored" if bot.live else decision.reason
            tally.skipped.append((bot.id, f"changed since selection: {reason}", ""))
        # The rest were not in the sample: counted, not listed.
        tally.unlisted_skips += max(0, selection.found - tally.deleted - len(still))

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
