"""The stages of one run: select every stage, then (unless dry) execute them one by one.

Stages fail alone: an error is recorded against its stage and the next stage still runs; a stop
request or a lost lock ends the run between batches. What each stage found, removed, skipped and
how it ended becomes the report's ``resources`` (:mod:`botfleet.cleanup.report`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from botfleet.cleanup import report as rpt
from botfleet.cleanup.containers import (
    ContainerSelection,
    bot_records,
    remove_containers,
    select_containers,
)
from botfleet.cleanup.eligibility import bot_purge_decision
from botfleet.cleanup.execute import (
    Executor,
    FixedBatch,
    Interrupted,
    Progress,
    Tally,
    session_limits,
)
from botfleet.cleanup.lock import CleanupLock
from botfleet.cleanup.plan import (
    Plan,
    Prepare,
    Selection,
    Slicing,
    drop_orphan_tables,
    max_result_id,
    orphan_table,
    select_bots,
    select_orphaned_results,
    select_results,
)
from botfleet.constants import (
    DEPENDENCY_DATABASE,
    KIND_BOT_RESULTS,
    KIND_BOTS,
    KIND_CONTAINERS,
    KIND_ORPHANED_RESULTS,
    KIND_RESULTS,
    REASON_INTERRUPTED,
    REASON_REFUSED,
)
from botfleet.errors import LockLost
from botfleet.store.models import CleanupRun

if TYPE_CHECKING:
    from botfleet.cleanup.service import CleanupService

log = logging.getLogger(__name__)

PauseHook = Callable[[], Awaitable[Any]]
# The order stages run in: bots (with their results) first, so that what they leave behind is
# not counted as orphaned; containers last, after the database stages.
ORDER = (KIND_BOTS, KIND_RESULTS, KIND_ORPHANED_RESULTS, KIND_CONTAINERS)
_DB_KINDS = (KIND_BOTS, KIND_RESULTS, KIND_ORPHANED_RESULTS)


def is_database_error(exc: BaseException) -> bool:
    """The database failed (as opposed to a bug here): the scheduler's breaker counts these."""
    if isinstance(exc, DBAPIError | SATimeoutError | OSError | TimeoutError | LockLost):
        return True
    return type(exc).__module__.startswith("asyncpg")


def error_entry(stage: str, exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": stage, "message": f"{type(exc).__name__}: {exc}"[:500]}
    if is_database_error(exc):
        out["dependency"] = DEPENDENCY_DATABASE
    return out


class Run:
    """One run's state between selection and report; lives only inside ``_locked_run``."""

    def __init__(
        self,
        service: CleanupService,
        run_id: uuid.UUID,
        lock: CleanupLock,
        actor: str,
        dry_run: bool,
        only: frozenset[str] | None,
        stored: Plan | None,
        skip_engines: frozenset[str],
        progress: Progress | None,
    ) -> None:
        self.s = service
        self.run_id = run_id
        self.lock = lock
        self.actor = actor
        self.dry_run = dry_run
        self.stored = stored
        self.skip_engines = skip_engines
        self.progress = progress
        self.policy = stored.policy if stored else service.policy
        self.now = stored.now if stored else service.clock()
        self.plan: Plan | None = None
        self.errors: list[dict[str, Any]] = []
        self.selections: dict[str, Selection] = {}
        self.containers: ContainerSelection | None = None
        self.outcomes: dict[str, str] = {}
        self.tallies: dict[str, Tally] = {}
        self.durations: dict[str, float] = {}
        self.extra: dict[str, dict[str, Any]] = {}
        self.stages = self._stages(only)
        self.orphan_table: str | None = None  # PostgreSQL: the run's orphan ids (plan.py)

    def _stages(self, only: frozenset[str] | None) -> list[str]:
        settings = self.s.settings
        enabled = {
            KIND_BOTS: True,
            KIND_RESULTS: self.policy.results_stage_enabled,
            KIND_ORPHANED_RESULTS: True,
            KIND_CONTAINERS: settings.container_cleanup_enabled,
        }
        chosen = []
        for kind in ORDER:
            if not enabled[kind]:
                self.outcomes[kind] = rpt.DISABLED
            elif (only is not None and kind not in only) or (
                self.stored is not None and kind not in self.stored.stages
            ):
                self.outcomes[kind] = rpt.NOT_SELECTED
            else:
                chosen.append(kind)
        return chosen

    async def checkpoint(self) -> None:
        """Before every batch: a stop request ends the run here; a lost lock ends it too."""
        if self.s.stop_requested:
            raise Interrupted()
        if not await self.lock.still_held():
            raise LockLost()

    # --- selection -----------------------------------------------------------------------------
    async def select(self) -> None:
        """Every stage's selection. On PostgreSQL they run side by side, each on its own
        connection: on two cores the plan of the benchmark store takes the time of its longest
        stage, not of all of them (bench/plan)."""
        s = self.s
        max_id = self.stored.max_result_id if self.stored else None
        await self.checkpoint()
        failure: Exception | None = None
        if max_id is None and set(self.stages) & set(_DB_KINDS):
            try:
                async with s.sessions() as session:
                    await session_limits(session, s.settings, postgres=s.dialect.postgres)
                    max_id = await max_result_id(session)
            except Exception as exc:  # every database stage fails with it, below
                failure = exc
        selections = [self._select_one(kind, max_id or 0, failure) for kind in self.stages]
        if s.dialect.postgres:
            outcomes = await asyncio.gather(*selections)
        else:  # one writer, one file: no gain in overlapping
            outcomes = [await selection for selection in selections]
        for errors in outcomes:  # in stage order, however the selections interleaved
            self.errors.extend(errors)
        found = {k: v.found for k, v in self.selections.items()}
        self.plan = Plan(
            id=self.stored.id if self.stored else str(self.run_id),
            now=self.now,
            instance=s.settings.botfleet_instance,
            policy=self.policy,
            stages=tuple(k for k in self.stages if self.outcomes.get(k) != rpt.FAILED),
            max_result_id=max_id or 0,
            found=found,
            containers=self.containers.targets if self.containers else [],
        )
        await self._store_plan()

    async def _select_one(
        self, kind: str, max_id: int, failure: Exception | None
    ) -> list[dict[str, Any]]:
        """One stage's selection; its errors are returned (the report lists them in order)."""
        s = self.s
        errors: list[dict[str, Any]] = []
        started = time.perf_counter()
        limits: Prepare = lambda r: session_limits(r, s.settings, postgres=True)  # noqa: E731
        try:
            if kind in _DB_KINDS:
                if failure is not None:
                    raise failure
                await self._select_in_session(kind, max_id, limits)
            else:
                self.containers = await select_containers(
                    s.fleet,
                    s.sessions,
                    instance=s.settings.botfleet_instance,
                    policy=self.policy,
                    now=self.now,
                    concurrency=s.settings.cleanup_container_concurrency,
                    skip_engines=self.skip_engines,
                    planned=self.stored.containers if self.stored else None,
                )
                self.selections[kind] = self.containers.selection
                errors.extend(self.containers.errors)
        except Exception as exc:
            if not is_database_error(exc):
                log.exception("cleanup selection of %s failed", kind)
            errors.append(error_entry(kind, exc))
            self.outcomes[kind] = rpt.FAILED
            self.selections.setdefault(kind, Selection(kind))
            if kind == KIND_BOTS:
                self.selections.setdefault(KIND_BOT_RESULTS, Selection(KIND_BOT_RESULTS))
        self.durations[kind] = time.perf_counter() - started
        return errors

    async def _select_in_session(self, kind: str, max_id: int, limits: Prepare) -> None:
        s = self.s
        async with s.sessions() as session:
            await session_limits(session, s.settings, postgres=s.dialect.postgres)
            slicing = Slicing(s.sessions, limits, s.settings.cleanup_db_concurrency)
            if kind == KIND_BOTS:
                bots, results = await select_bots(
                    session, s.dialect, self.policy, self.now, slicing
                )
                self.selections[KIND_BOTS] = bots
                self.selections[KIND_BOT_RESULTS] = results
            elif kind == KIND_RESULTS:
                self.selections[kind] = await select_results(
                    session, s.dialect, self.policy, self.now, max_id
                )
            elif s.dialect.postgres:
                # A table of this run's own, and none left over by a run that crashed.
                await drop_orphan_tables(session)
                await session.commit()
                self.orphan_table = orphan_table(self.run_id)
                self.selections[kind] = await select_orphaned_results(
                    session, max_id, slicing, table=self.orphan_table
                )
            else:
                self.selections[kind] = await select_orphaned_results(session, max_id)

    async def close(self) -> None:
        """Drop this run's orphan table (PostgreSQL), if selection made one."""
        table, self.orphan_table = self.orphan_table, None
        if table is None:
            return
        try:
            async with self.s.sessions() as session, session.begin():
                await session.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        except Exception as exc:  # the next run drops it (drop_orphan_tables)
            log.warning("dropping the orphan table %s failed: %s", table, exc)

    async def _store_plan(self) -> None:
        """Stored before anything is deleted: a crash mid-run still shows what was meant."""
        assert self.plan is not None
        try:
            async with self.s.sessions() as session, session.begin():
                await session.execute(
                    update(CleanupRun)
                    .where(CleanupRun.id == self.run_id)
                    .values(plan=self.plan.to_json())
                )
        except Exception as exc:
            log.warning("cleanup run %s: storing the plan failed: %s", self.run_id, exc)

    # --- execution -----------------------------------------------------------------------------
    def _refusal(self, kind: str) -> str | None:
        """Why a stage must delete nothing: over the cap, or the plan no longer holds."""
        cap = self.s.settings.cleanup_max_deletions
        kinds = [kind, KIND_BOT_RESULTS] if kind == KIND_BOTS else [kind]
        for k in kinds:
            found = self.selections[k].found
            if cap is not None and found > cap:
                self.extra.setdefault(k, {})["capped"] = True
                return (
                    f"{k}: {found} to delete exceeds CLEANUP_MAX_DELETIONS={cap}; "
                    "this stage deleted nothing"
                )
        if self.stored is not None:
            planned = self.stored.found.get(kind)
            found = self.selections[kind].found
            if planned is not None and found > planned:
                return (
                    f"{kind}: {found} items match now but the plan had {planned}; "
                    "refusing to delete more than planned"
                )
        return None

    async def execute(
        self, pause_hook: PauseHook | None
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], bool]:
        fatal = False
        try:
            await self.select()
            if pause_hook is not None:
                await pause_hook()
            for kind in self.stages:
                if self.outcomes.get(kind) == rpt.FAILED:
                    continue
                refusal = self._refusal(kind)
                if refusal is not None:
                    self.outcomes[kind] = rpt.REFUSED
                    self.errors.append(
                        {"stage": kind, "reason": REASON_REFUSED, "message": refusal}
                    )
                    continue
                if self.dry_run:
                    self.outcomes[kind] = (
                        self._container_outcome(rpt.PLANNED)
                        if kind == KIND_CONTAINERS
                        else rpt.PLANNED
                    )
                    continue
                await self.checkpoint()
                await self._execute_stage(kind)
        except Interrupted:
            self._interrupt("stop requested; ended after the current batch")
        except LockLost as exc:
            fatal = True
            self._interrupt(str(exc), dependency=True)
        return self.resources(), self.errors, fatal

    def _interrupt(self, message: str, *, dependency: bool = False) -> None:
        first = True
        for kind in self.stages:
            # The stage that was cut short (already marked) and every stage not yet run.
            if self.outcomes.get(kind, rpt.INTERRUPTED) != rpt.INTERRUPTED:
                continue
            self.outcomes[kind] = rpt.INTERRUPTED
            if first:
                error: dict[str, Any] = {
                    "stage": kind,
                    "reason": REASON_INTERRUPTED,
                    "message": message,
                }
                if dependency:
                    error["dependency"] = DEPENDENCY_DATABASE
                self.errors.append(error)
                first = False

    def _container_outcome(self, clean: str) -> str:
        sel = self.containers
        if sel is None:
            return clean
        engines = [n for n in self.s.fleet.names if n not in self.skip_engines]
        failed = {e.get("engine") for e in sel.errors}
        if engines and failed >= set(engines):
            return rpt.FAILED
        if sel.errors or (self.skip_engines & set(self.s.fleet.names)):
            return rpt.PARTIAL
        return clean

    async def _execute_stage(self, kind: str) -> None:
        s = self.s
        tally = self.tallies.setdefault(kind, Tally())
        executor = Executor(
            sessions=s.sessions,
            dialect=s.dialect,
            policy=self.policy,
            now=self.now,
            run_id=self.run_id,
            actor=self.actor,
            checkpoint=self.checkpoint,
            governor=s.governor or FixedBatch(s.settings.cleanup_batch_size),
            lock_timeout_ms=s.settings.cleanup_lock_timeout_ms,
            statement_timeout_ms=s.settings.cleanup_statement_timeout_ms,
            clock=s.clock,
            concurrency=s.settings.cleanup_db_concurrency,
            progress=self.progress,
        )
        limit = self.selections[kind].found
        started = time.perf_counter()
        try:
            if kind == KIND_BOTS:
                await executor.purge_bots(tally, limit)
                await self._explain_kept_bots(tally)
            elif kind == KIND_RESULTS:
                assert self.plan is not None
                await executor.purge_results(tally, limit, self.plan.max_result_id)
            elif kind == KIND_ORPHANED_RESULTS:
                assert self.plan is not None
                await executor.purge_orphaned_results(
                    tally, limit, self.plan.max_result_id, table=self.orphan_table
                )
            else:
                assert self.containers is not None
                await remove_containers(
                    executor,
                    s.fleet,
                    self.containers.targets,
                    tally,
                    instance=s.settings.botfleet_instance,
                    concurrency=s.settings.cleanup_container_concurrency,
                    limit=limit,
                )
                self.errors.extend(tally.errors)
                outcome = self._container_outcome(rpt.DONE)
                if outcome == rpt.DONE and (tally.errors or tally.failed):
                    outcome = rpt.PARTIAL
                self.outcomes[kind] = outcome
        except (Interrupted, LockLost):
            self.outcomes[kind] = rpt.INTERRUPTED
            raise
        except Exception as exc:
            if not is_database_error(exc):
                log.exception("cleanup stage %s failed", kind)
            self.errors.append(error_entry(kind, exc))
            self.outcomes[kind] = rpt.FAILED
        finally:
            self.durations[kind] = self.durations.get(kind, 0.0) + time.perf_counter() - started
        self.outcomes.setdefault(kind, rpt.DONE)

    async def _explain_kept_bots(self, tally: Tally) -> None:
        """Fewer bots went than were found: name the sampled ones that stayed, and why."""
        selection = self.selections[KIND_BOTS]
        if tally.deleted >= selection.found or not selection.sample:
            return
        still = await bot_records(self.s.sessions, selection.sample)
        for bot in still.values():
            decision = bot_purge_decision(bot, self.policy, self.s.clock())
            reason = "restored" if bot.live else decision.reason
            tally.skipped.append((bot.id, f"changed since selection: {reason}", ""))
        # The rest were not in the sample: counted, not listed.
        tally.unlisted_skips += max(0, selection.found - tally.deleted - len(still))

    # --- the report's resources ----------------------------------------------------------------
    def resources(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        kinds = list(rpt.CONTRACT_KINDS)
        if self.policy.results_stage_enabled:
            kinds.insert(2, KIND_RESULTS)
        for kind in kinds:
            stage = KIND_BOTS if kind == KIND_BOT_RESULTS else kind
            outcome = self.outcomes.get(
                stage, rpt.INTERRUPTED if stage in self.stages else rpt.NOT_SELECTED
            )
            selection = self.selections.get(kind, Selection(kind))
            tally = self.tallies.get(stage)
            item = rpt.entry(
                selection,
                outcome=outcome,
                tally=tally,
                related=kind == KIND_BOT_RESULTS,
                duration=self.durations.get(stage),
            )
            item.update(self.extra.get(kind, {}))
            if self.stored is not None and kind in self.stored.found:
                item["planned"] = self.stored.found[kind]
                item["changed_since_plan"] = max(0, self.stored.found[kind] - selection.found)
            out[kind] = item
        return out
