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
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert

from botfleet.cleanup.batches import Tally
from botfleet.cleanup.bot_lookup import BotLookup, SqliteBotReader
from botfleet.cleanup.container_scope import ContainerTarget
from botfleet.cleanup.context import StageContext
from botfleet.cleanup.eligibility import BotRecord, container_decision
from botfleet.cleanup.failures import Interrupted
from botfleet.cleanup.sql import jsonable
from botfleet.constants import DEPENDENCY_DATABASE, KIND_CONTAINERS
from botfleet.errors import ContainerConflict, EngineUnavailable, LockLost
from botfleet.runtime.base import ContainerEngine, ContainerInfo
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import CleanupAudit

log = logging.getLogger(__name__)

# A removal waits this long for its bot's row before it gives up (and removes nothing).
BOT_CHECK_TIMEOUT_SECONDS = 60.0
# Removed containers are audited in groups of this many (and at the end): one transaction each.
AUDIT_EVERY = 32


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
        # A sliding window of ``concurrency`` removals (no chunk waits for its slowest member);
        # audit rows are written every AUDIT_EVERY removals and at the end.
        gate = asyncio.Semaphore(concurrency)
        removed: list[tuple[ContainerTarget, ContainerInfo]] = []
        state: dict[str, BaseException | None] = {"down": None, "stop": None}

        attempted: set[str] = set()

        async def one(t: ContainerTarget) -> None:
            async with gate:
                if state["down"] is not None or state["stop"] is not None:
                    return
                try:
                    await stage.checkpoint()
                except (Interrupted, LockLost) as exc:  # in-flight removals finish, no new ones
                    state["stop"] = exc
                    return
                attempted.add(t.id)
                try:
                    outcome: str | ContainerInfo = await _remove_one(
                        stage, engine, t, instance, lookup, reader
                    )
                except EngineUnavailable as exc:
                    state["down"] = state["down"] or exc
                    tally.failed += 1
                    return
                except _BotCheckFailed as exc:
                    # The database, not the engine, failed: the container stays, uncounted.
                    tally.failed += 1
                    tally.errors.append(
                        {
                            "stage": kind,
                            "dependency": DEPENDENCY_DATABASE,
                            "message": f"{t.id[:12]}: bot check failed: {exc}"[:300],
                        }
                    )
                    return
                except Exception as exc:
                    tally.failed += 1
                    message = f"{t.id[:12]}: {type(exc).__name__}: {exc}"[:300]
                    tally.errors.append({"stage": kind, "engine": name, "message": message})
                    return
            if isinstance(outcome, str):
                tally.skipped.append((t.id, outcome, name))
                return
            removed.append((t, outcome))
            if len(removed) >= AUDIT_EVERY:
                batch = removed[:]
                removed.clear()
                await _record_removed(stage, kind, batch, tally)
                stage.report_progress(kind, tally.deleted, total)

        await asyncio.gather(*(one(t) for t in mine))
        await _record_removed(stage, kind, removed, tally)
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


def _read(reader: SqliteBotReader, bot_id: str | None) -> BotRecord | None:
    try:
        return reader.get(bot_id)
    except Exception as exc:
        raise _BotCheckFailed(f"{type(exc).__name__}: {exc}") from exc


def _wait_for(pending: concurrent.futures.Future[BotRecord | None]) -> BotRecord | None:
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


async def _record_removed(
    stage: StageContext,
    kind: str,
    removed: list[tuple[ContainerTarget, ContainerInfo]],
    tally: Tally,
) -> None:
    if not removed:
        return
    tally.deleted += len(removed)
    at = stage.run.clock()
    for t, info in removed:
        tally.bytes_reclaimed += info.size_bytes or t.size_bytes or 0
        if t.age_seconds is not None:
            grace = stage.policy.container_grace.total_seconds()
            tally.lag_seconds.append(round(t.age_seconds - grace, 3))
    rows = [
        {
            "run_id": stage.run_id,
            "kind": kind,
            "resource_id": t.id,
            "engine": t.engine,
            "reason": f"{kind}: {t.reason}",
            "actor": stage.actor,
            "snapshot": container_snapshot(info, t.size_bytes),
            "deleted_at": at,
        }
        for t, info in removed
    ]
    try:
        async with stage.run.sessions() as session, session.begin():
            await session.execute(insert(CleanupAudit), rows)
    except Exception as exc:
        # The containers are gone either way; say loudly that their audit is missing.
        log.error("audit of %d removed %s failed: %s", len(rows), kind, exc)
        tally.errors.append(
            {
                "stage": kind,
                "dependency": DEPENDENCY_DATABASE,
                "message": f"audit write failed for {len(rows)} removed {kind}: "
                f"{type(exc).__name__}",
            }
        )


def container_snapshot(info: ContainerInfo, size_bytes: int | None = None) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "engine": info.engine,
        "state": info.state,
        "labels": dict(info.labels),
        "created_at": jsonable(info.created_at),
        "finished_at": jsonable(info.finished_at),
        "exit_code": info.exit_code,
        "size_bytes": info.size_bytes if info.size_bytes is not None else size_bytes,
        # A service's: its version when removed, and where its last task ran.
        **({"version": info.version, "node": info.node} if info.version is not None else {}),
    }
