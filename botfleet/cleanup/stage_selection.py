"""Selection of every stage under a plan: the counts, samples and targets a run may delete —
and all that a dry run reports. The same code for both (style.md, habit 5).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from botfleet.cleanup.container_selection import ContainerSelection, select_containers
from botfleet.cleanup.context import RunContext
from botfleet.cleanup.database_selection import (
    drop_orphan_tables,
    max_result_id,
    orphan_table,
    select_bots,
    select_orphaned_results,
    select_results,
)
from botfleet.cleanup.failures import error_entry, is_database_error
from botfleet.cleanup.idle_bots import select_idle_bots
from botfleet.cleanup.plan import DATABASE_STAGES, STAGES, Plan, Selection
from botfleet.cleanup.quota_selection import select_over_quota
from botfleet.cleanup.quota_terms import BudgetBoundary
from botfleet.cleanup.report import DISABLED, FAILED, NOT_SELECTED, Findings
from botfleet.cleanup.result_slices import Connect, Slicing
from botfleet.cleanup.sql import dedicated_connection
from botfleet.constants import (
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_CONTAINERS,
    KIND_IDLE_BOTS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    KIND_RESULTS_OVER_QUOTA,
    KIND_SERVICES,
)

log = logging.getLogger(__name__)


def stages_taken(plan: Plan, only: frozenset[str] | None, ctx: RunContext) -> Findings:
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


class StageSelector:
    """Selects a run's stages into its findings; keeps what execution needs besides counts."""

    def __init__(
        self,
        ctx: RunContext,
        plan: Plan,
        found: Findings,
        run_id: uuid.UUID,
        skip_engines: frozenset[str],
    ) -> None:
        self.ctx = ctx
        self.plan = plan
        self.found = found
        self.run_id = run_id
        self.skip_engines = skip_engines
        self.workloads: dict[str, ContainerSelection] = {}  # containers, services
        self.orphan_table: str | None = None  # PostgreSQL: the run's orphan ids
        self.budget_boundary: BudgetBoundary | None = None  # results_over_quota's

    async def select(self) -> Plan:
        """Every stage's selection, and the plan it makes. On PostgreSQL they run side by side,
        each on its own connection: the plan takes the time of its longest stage, not of all
        (bench/plan)."""
        found = self.found
        max_id = self.plan.max_result_id
        failure: Exception | None = None
        if set(found.stages) & set(DATABASE_STAGES):
            try:
                async with self.ctx.sessions() as session:
                    await self.ctx.bound(session)
                    max_id = min(self.plan.max_result_id, await max_result_id(session))
            except Exception as exc:  # every database stage fails with it, below
                failure = exc
        # The budget comes last: it credits what the other stages will delete.
        first = [k for k in found.stages if k != KIND_RESULTS_OVER_QUOTA]
        selections = [self._select_one(kind, max_id, failure) for kind in first]
        if self.ctx.dialect.postgres:
            outcomes = await asyncio.gather(*selections)
        else:  # one writer, one file: no gain in overlapping
            outcomes = [await selection for selection in selections]
        if KIND_RESULTS_OVER_QUOTA in found.stages:
            outcomes.append(await self._select_one(KIND_RESULTS_OVER_QUOTA, max_id, failure))
        for errors in outcomes:  # in stage order, however the selections interleaved
            found.errors.extend(errors)
        return self.plan.selected(
            stages=[k for k in found.stages if found.outcomes.get(k) != FAILED],
            max_result_id=max_id,
            found={k: v.found for k, v in found.selections.items()},
            workloads={kind: sel.targets for kind, sel in self.workloads.items()},
            budget_boundary=None
            if self.budget_boundary is None
            else self.budget_boundary.to_json(),
        )

    async def _select_one(
        self, kind: str, max_id: int, failure: Exception | None
    ) -> list[dict[str, Any]]:
        """One stage's selection; its errors are returned (the report lists them in order)."""
        errors: list[dict[str, Any]] = []
        started = time.perf_counter()
        try:
            if kind in DATABASE_STAGES:
                if failure is not None:
                    raise failure
                await self._select_in_session(kind, max_id)
            else:
                selected = await select_containers(
                    self.ctx.fleet,
                    self.ctx.sessions,
                    kind=kind,
                    instance=self.ctx.limits.instance,
                    policy=self.plan.policy,
                    now=self.plan.now,
                    concurrency=self.ctx.limits.container_concurrency,
                    skip_engines=self.skip_engines,
                    scope=self.plan.scope(kind),
                )
                self.workloads[kind] = selected
                self.found.selections[kind] = selected.selection
                errors.extend(selected.errors)
        except Exception as exc:
            if not is_database_error(exc):
                log.exception("cleanup selection of %s failed", kind)
            errors.append(error_entry(kind, exc))
            self.found.outcomes[kind] = FAILED
            self.found.selections.setdefault(kind, Selection(kind))
            if kind == KIND_BOTS:
                self.found.selections.setdefault(KIND_BOT_RESULTS, Selection(KIND_BOT_RESULTS))
        self.found.durations[kind] = time.perf_counter() - started
        return errors

    def _slice_connections(self) -> Connect | None:
        """PostgreSQL: each slice worker on a connection of its own (result_slices.Slicing)."""
        ctx = self.ctx
        if not ctx.dialect.postgres:
            return None
        limits = ctx.limits
        return lambda: dedicated_connection(
            ctx.db, limits.lock_timeout_ms, limits.statement_timeout_ms
        )

    def _credit(self) -> int:
        """Results the run's other stages will delete (what the budget need not)."""
        kinds = (KIND_BOT_RESULTS, KIND_RESULTS, KIND_ORPHANED_RESULTS)
        selections = self.found.selections
        return sum(
            selections[k].found
            for k in kinds
            if k in selections
            and self.found.outcomes.get(KIND_BOTS if k == KIND_BOT_RESULTS else k) != FAILED
        )

    async def _select_in_session(self, kind: str, max_id: int) -> None:
        ctx, plan, selections = self.ctx, self.plan, self.found.selections
        async with ctx.sessions() as session:
            await ctx.bound(session)
            slicing = Slicing(
                ctx.sessions, ctx.bound, ctx.limits.db_concurrency, self._slice_connections()
            )
            if kind == KIND_BOTS:
                bots, results = await select_bots(
                    session, ctx.dialect, plan.policy, plan.now, slicing
                )
                selections[KIND_BOTS] = bots
                selections[KIND_BOT_RESULTS] = results
            elif kind == KIND_RESULTS:
                selections[kind] = await select_results(
                    session, ctx.dialect, plan.policy, plan.now, max_id
                )
            elif kind == KIND_IDLE_BOTS:
                selections[kind], reasons = await select_idle_bots(
                    session, ctx.dialect, plan.policy, plan.now
                )
                self.found.extra.setdefault(kind, {})["reasons"] = reasons
            elif kind == KIND_RESULTS_OVER_QUOTA:
                quota = await select_over_quota(
                    session,
                    ctx.dialect,
                    plan.policy,
                    plan.now,
                    max_id,
                    credit=self._credit(),
                    stored=(
                        (BudgetBoundary.from_json(plan.budget_boundary),)
                        if plan.fixes_budget
                        else None
                    ),
                    slicing=slicing,
                )
                selections[kind] = quota.selection
                self.budget_boundary = quota.boundary
                extra = self.found.extra.setdefault(kind, {})
                extra.update(quota.extra)
                if quota.budget is not None:
                    extra["budget"] = quota.budget
            elif ctx.dialect.postgres:
                # A table of this run's own, and none left over by a run that crashed.
                await drop_orphan_tables(session)
                await session.commit()
                self.orphan_table = orphan_table(self.run_id)
                selections[kind] = await select_orphaned_results(
                    session, max_id, slicing, table=self.orphan_table
                )
            else:
                selections[kind] = await select_orphaned_results(session, max_id)
