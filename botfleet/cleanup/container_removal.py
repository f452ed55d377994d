"""The removal of the engines' workloads — containers (safety rule 2), a swarm's services (rule
6): per engine, ``CLEANUP_CONTAINER_CONCURRENCY`` at a time, each right after a fresh look at it
(a service's version must be the one selected) and at its bot's row, never forced and never with
volumes; audited in groups. A dead engine stops its own share only; a stop request lets the
removals in flight finish and starts no new one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Mapping, Sequence
from typing import TypeVar

from botfleet.cleanup.batches import Tally
from botfleet.cleanup.bot_lookup import BotLookup, SqliteBotReader, bot_records
from botfleet.cleanup.container_scope import ContainerTarget
from botfleet.cleanup.context import StageContext
from botfleet.cleanup.eligibility import BotRecord, bot_uuid, container_decision
from botfleet.cleanup.failures import Interrupted
from botfleet.cleanup.removal_audit import record_removed
from botfleet.constants import DEPENDENCY_DATABASE, KIND_CONTAINERS
from botfleet.errors import ContainerConflict, EngineUnavailable, LockLost
from botfleet.runtime.base import ContainerEngine, ContainerInfo, GroupOutcome, RemovesInGroups
from botfleet.runtime.fleet import Fleet

log = logging.getLogger(__name__)
T = TypeVar("T")

# A removal waits this long for its bot's row before it gives up (and removes nothing).
BOT_CHECK_TIMEOUT_SECONDS = 60.0
# Removed containers are audited in groups of this many (and at the end): one transaction each.
AUDIT_EVERY = 32
# On an engine that removes in groups (a swarm), how many groups are removed at once.
GROUPS_IN_FLIGHT = 2


async def remove_containers(
    stage: StageContext,
    fleet: Fleet,
    targets: Sequence[ContainerTarget],
    tally: Tally,
    *,
    kind: str = KIND_CONTAINERS,
    instance: str,
    concurrency: int,
    limit: int,
) -> None:
    """Per engine, ``concurrency`` at a time; a dead engine stops only its own share."""
    by_engine: dict[str, list[ContainerTarget]] = {}
    for target in targets[:limit]:
        by_engine.setdefault(target.engine, []).append(target)
    total = min(len(targets), limit)
    lookup = BotLookup(stage.run.sessions)
    reader = SqliteBotReader.for_engine(stage.run.db)

    async def engine_share(name: str, mine: list[ContainerTarget]) -> None:
        engine = fleet.engines.get(name)
        if engine is None:
            for t in mine:
                tally.skipped.append((t.id, "engine no longer in DOCKER_HOSTS", name))
            return
        # A sliding window of ``concurrency`` removals (no chunk waits for its slowest member),
        # or on an engine that removes in groups, groups of ``concurrency``, GROUPS_IN_FLIGHT at
        # a time; audit rows are written every AUDIT_EVERY removals and at the end.
        in_groups = isinstance(engine, RemovesInGroups)
        gate = asyncio.Semaphore(GROUPS_IN_FLIGHT if in_groups else concurrency)
        removed: list[tuple[ContainerTarget, ContainerInfo]] = []
        state: dict[str, BaseException | None] = {"down": None, "stop": None}

        attempted: set[str] = set()

        async def may_start() -> bool:
            if state["down"] is not None or state["stop"] is not None:
                return False
            try:
                await stage.checkpoint()
            except (Interrupted, LockLost) as exc:  # in-flight removals finish, no new ones
                state["stop"] = exc
                return False
            return True

        async def settle(t: ContainerTarget, outcome: GroupOutcome) -> None:
            if isinstance(outcome, EngineUnavailable):
                state["down"] = state["down"] or outcome
                tally.failed += 1
            elif isinstance(outcome, _BotCheckFailed):
                # The database, not the engine, failed: the container stays, uncounted.
                tally.failed += 1
                tally.errors.append(
                    {
                        "stage": kind,
                        "dependency": DEPENDENCY_DATABASE,
                        "message": f"{t.id[:12]}: bot check failed: {outcome}"[:300],
                    }
                )
            elif isinstance(outcome, BaseException):
                tally.failed += 1
                message = f"{t.id[:12]}: {type(outcome).__name__}: {outcome}"[:300]
                tally.errors.append({"stage": kind, "engine": name, "message": message})
            elif isinstance(outcome, str):
                tally.skipped.append((t.id, outcome, name))
            else:
                removed.append((t, outcome))
                if len(removed) >= AUDIT_EVERY:
                    batch = removed[:]
                    removed.clear()
                    await record_removed(stage, kind, batch, tally)
                    stage.report_progress(kind, tally.deleted, total)

        async def one(t: ContainerTarget) -> None:
            async with gate:
                if not await may_start():
                    return
                attempted.add(t.id)
                try:
                    outcome: GroupOutcome = await _remove_one(
                        stage, engine, t, instance, lookup, reader
                    )
                except Exception as exc:
                    outcome = exc
            await settle(t, outcome)

        async def group(ts: list[ContainerTarget], engine: RemovesInGroups) -> None:
            async with gate:
                if not await may_start():
                    return
                attempted.update(t.id for t in ts)
                try:
                    outcomes: list[GroupOutcome] = await remove_group(
                        stage, engine, ts, instance, reader
                    )
                except Exception as exc:
                    outcomes = [exc] * len(ts)
            for t, outcome in zip(ts, outcomes, strict=True):
                await settle(t, outcome)

        if isinstance(engine, RemovesInGroups):
            step = max(1, concurrency)
            await asyncio.gather(
                *(group(mine[i : i + step], engine) for i in range(0, len(mine), step))
            )
        else:
            await asyncio.gather(*(one(t) for t in mine))
        await record_removed(stage, kind, removed, tally)
        stage.report_progress(kind, tally.deleted, total)
        down = state["down"]
        if down is not None:
            tally.errors.append({"stage": kind, "engine": name, "message": str(down)})
            for t in mine:
                if t.id not in attempted:
                    tally.skipped.append((t.id, f"engine {name} unavailable", name))
        stop = state["stop"]
        if stop is not None:
            raise stop

    # Every engine finishes its removals in flight before a stop or a lost lock ends the stage.
    try:
        ended = await asyncio.gather(
            *(engine_share(n, m) for n, m in by_engine.items()), return_exceptions=True
        )
    finally:
        if reader is not None:
            reader.close()
    for end in ended:
        if isinstance(end, BaseException):
            raise end


class _BotCheckFailed(Exception):
    """Looking the bot up again failed (a database error): never remove on a guess."""


async def _remove_one(
    stage: StageContext,
    engine: ContainerEngine,
    target: ContainerTarget,
    instance: str,
    lookup: BotLookup,
    reader: SqliteBotReader | None = None,
) -> str | ContainerInfo:
    """Inspect again, look at the bot again, then remove. A str return is a skip reason.

    The three happen in one call of the engine's thread (``remove_verified``), so nothing but the
    bot's query comes between the last look at the container and its removal. The query: on a
    SQLite file, a read of its own in that thread (``reader``); otherwise on the event loop,
    shared with the other removals in flight.
    """
    loop = asyncio.get_running_loop()

    def verdict(info: ContainerInfo, bot: BotRecord | None) -> str | None:
        decision = container_decision(
            info, bot, instance=instance, grace=stage.policy.container_grace, now=stage.run.clock()
        )
        return None if decision.eligible else decision.reason

    async def bot_of() -> BotRecord | None:
        try:
            return await lookup.get(target.bot_id)
        except Exception as exc:
            raise _BotCheckFailed(f"{type(exc).__name__}: {exc}") from exc

    def check(info: ContainerInfo | None) -> str | None:  # in the engine's thread
        seen = _unchanged(target, info)
        if isinstance(seen, str):
            return seen
        if reader is None:
            bot = _wait_for(asyncio.run_coroutine_threadsafe(bot_of(), loop))
        else:
            bot = _read(reader, target.bot_id)
        return verdict(seen, bot)

    try:
        return await engine.remove_verified(target.id, check)
    except ContainerConflict as exc:
        return f"engine refused removal: {exc}"[:300]


async def remove_group(
    stage: StageContext,
    engine: RemovesInGroups,
    targets: Sequence[ContainerTarget],
    instance: str,
    reader: SqliteBotReader | None,
) -> list[GroupOutcome]:
    """The engine looks at the whole group; then, in its thread, the bots' rows are read in one
    query and each workload is judged as :func:`_remove_one` judges it; the engine removes those
    cleared. A failed read of the bots raises a failed bot check: nothing of the group goes."""
    loop, grace = asyncio.get_running_loop(), stage.policy.container_grace

    def bots_of(labels: list[str]) -> dict[str, BotRecord]:  # by label
        if reader is not None:
            return reader.read(labels)
        pending = asyncio.run_coroutine_threadsafe(bot_records(stage.run.sessions, labels), loop)
        rows = _wait_for(pending)
        keys = {label: str(key) for label in labels if (key := bot_uuid(label)) is not None}
        return {label: rows[key] for label, key in keys.items() if key in rows}

    def check(found: Mapping[str, ContainerInfo | None]) -> dict[str, str | None]:
        now, seen = stage.run.clock(), {t.id: _unchanged(t, found.get(t.id)) for t in targets}
        live = [i for i in seen.values() if isinstance(i, ContainerInfo)]
        try:
            bots = bots_of([i.bot_id for i in live if i.bot_id])
        except _BotCheckFailed:
            raise
        except Exception as exc:
            raise _BotCheckFailed(f"{type(exc).__name__}: {exc}") from exc
        reasons: dict[str, str | None] = {k: i for k, i in seen.items() if isinstance(i, str)}
        for info in live:
            bot = bots.get(info.bot_id or "")
            decision = container_decision(info, bot, instance=instance, grace=grace, now=now)
            reasons[info.id] = None if decision.eligible else decision.reason
        return reasons

    return await engine.remove_verified_group([t.id for t in targets], check)


def _read(reader: SqliteBotReader, bot_id: str | None) -> BotRecord | None:
    try:
        return reader.get(bot_id)
    except Exception as exc:
        raise _BotCheckFailed(f"{type(exc).__name__}: {exc}") from exc


def _wait_for(pending: concurrent.futures.Future[T]) -> T:
    """The bot's row, waited for in an engine thread. No answer in time, or the run's tasks
    cancelled as the event loop ends, is a failed check: the container stays."""
    try:
        return pending.result(timeout=BOT_CHECK_TIMEOUT_SECONDS)
    except concurrent.futures.TimeoutError:
        pending.cancel()
        raise _BotCheckFailed("the bot query timed out") from None
    except concurrent.futures.CancelledError:
        raise _BotCheckFailed("the bot query was cancelled (the run is ending)") from None


def _unchanged(target: ContainerTarget, info: ContainerInfo | None) -> ContainerInfo | str:
    """The container as selected, or why it no longer is."""
    if info is None:
        return "already gone"
    if info.id != target.id or info.bot_id != target.bot_id:
        return "labels or id changed since selection"
    if target.version is not None and info.version != target.version:
        return f"changed since selection: version {target.version} is now {info.version}"
    return info
