"""Containers: what each engine holds that may go, and its verified removal.

Selection lists every engine in ``DOCKER_HOSTS`` (never trusting the label filter alone) and
inspects the stopped ones for ``FinishedAt``; removal happens per engine, ``concurrency`` at a
time, each after a fresh inspect and a fresh look at the bot's row, never forced and never with
volumes (safety rule 2). A dead engine stops its own share only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from botfleet.cleanup.bot_reader import SqliteBotReader
from botfleet.cleanup.eligibility import BotRecord, Decision, bot_uuid, container_decision
from botfleet.cleanup.execute import Executor, Interrupted, Tally, jsonable
from botfleet.cleanup.plan import SAMPLE_SIZE, SKIPPED_LIMIT, ContainerTarget, Selection
from botfleet.cleanup.policy import Policy
from botfleet.constants import (
    DEPENDENCY_DATABASE,
    KIND_CONTAINERS,
    REASON_BREAKER_OPEN,
    REMOVABLE_STATES,
)
from botfleet.errors import EngineUnavailable, LockLost
from botfleet.runtime.base import ContainerEngine, ContainerInfo
from botfleet.runtime.docker import ContainerConflict, DockerEngine
from botfleet.runtime.fleet import Fleet
from botfleet.store.models import Bot, CleanupAudit
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)

# A removal waits this long for its bot's row before it gives up (and removes nothing).
BOT_CHECK_TIMEOUT_SECONDS = 60.0
# Removed containers are audited in groups of this many (and at the end): one transaction each.
AUDIT_EVERY = 32


class BotLookup:
    """Look-ups of bot rows by many concurrent removals, coalesced: a request waits for the next
    query that starts after it (so every answer is as fresh as a query of its own), and all
    requests waiting meanwhile share that one query. Removing 300 containers costs a few queries
    instead of 300 sessions (measured in bench/containers). Used on PostgreSQL; a SQLite file
    is read by each removal's own thread instead (:mod:`botfleet.cleanup.bot_reader`)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self._waiting: dict[str, list[asyncio.Future[BotRecord | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, bot_id: str | None) -> BotRecord | None:
        if not bot_id:
            return None
        future: asyncio.Future[BotRecord | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(bot_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                rows = await bot_records(self.sessions, list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            for bot_id, futures in batch.items():
                for f in futures:
                    if not f.done():
                        f.set_result(rows.get(bot_id))


# --- selection ------------------------------------------------------------------------------
async def bot_records(sessions: SessionFactory, bot_ids: Collection[str]) -> dict[str, BotRecord]:
    """The rows named by containers' bot-id labels; a label that is no UUID names no row."""
    ids = [key for key in map(bot_uuid, bot_ids) if key is not None]
    out: dict[str, BotRecord] = {}
    async with sessions() as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await session.execute(
                select(Bot.id, Bot.deleted_at, Bot.labels).where(Bot.id.in_(chunk))
            )
            for row in rows:
                out[str(row.id)] = BotRecord.of_row(row)
    return out


@dataclass
class ContainerSelection:
    """The container stage's selection: what to remove, what to leave, engine failures."""

    selection: Selection
    targets: list[ContainerTarget] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Every container judged, with its decision: the orphans view shows them all.
    judged: list[tuple[ContainerInfo, Decision]] = field(default_factory=list)


async def _inspect_stopped(
    engine: ContainerEngine, listed: list[ContainerInfo], concurrency: int
) -> list[ContainerInfo]:
    """A listing lacks ``FinishedAt``: inspect the stopped ones to learn how long they stopped."""
    gate = asyncio.Semaphore(concurrency)

    async def one(c: ContainerInfo) -> ContainerInfo | None:
        if c.state not in REMOVABLE_STATES:
            return c
        async with gate:
            # With the size of its writable layer (Docker computes it on request): measured once
            # here, so the re-inspect right before removal can skip it.
            if isinstance(engine, DockerEngine):
                return await engine.inspect(c.id, size=True)
            return await engine.inspect(c.id)

    found = await asyncio.gather(*(one(c) for c in listed))
    return [c for c in found if c is not None]


async def select_containers(
    fleet: Fleet,
    sessions: SessionFactory,
    *,
    instance: str,
    policy: Policy,
    now: datetime,
    concurrency: int,
    skip_engines: Collection[str] = frozenset(),
    planned: Sequence[ContainerTarget] | None = None,
) -> ContainerSelection:
    """Fresh: list every engine. From a plan: inspect exactly the planned ids, nothing else."""
    out = ContainerSelection(Selection(KIND_CONTAINERS))

    async def gather_engine(name: str, engine: ContainerEngine) -> list[ContainerInfo]:
        try:
            if planned is None:
                return await _inspect_stopped(
                    engine, await engine.list_managed(instance), concurrency
                )
            mine = [t for t in planned if t.engine == name]
            gate = asyncio.Semaphore(concurrency)

            async def inspect(t: ContainerTarget) -> ContainerInfo | None:
                async with gate:
                    return await engine.inspect(t.id)

            infos = await asyncio.gather(*(inspect(t) for t in mine))
            for t, info in zip(mine, infos, strict=True):
                if info is None:
                    out.selection.skip(t.id, "changed since the plan: already gone", engine=name)
            return [i for i in infos if i is not None]
        except EngineUnavailable as exc:
            out.errors.append({"stage": KIND_CONTAINERS, "engine": name, "message": str(exc)})
            return []
        except Exception as exc:  # one engine's surprise must not sink the others
            log.exception("listing containers on engine %s failed", name)
            message = f"{type(exc).__name__}: {exc}"[:300]
            out.errors.append({"stage": KIND_CONTAINERS, "engine": name, "message": message})
            return []

    used = {n: e for n, e in fleet.engines.items() if n not in skip_engines}
    for name in sorted(set(fleet.engines) & set(skip_engines)):
        ids = [t.id for t in planned or () if t.engine == name] or [f"engine:{name}"]
        for item in ids:
            out.selection.skip(item, REASON_BREAKER_OPEN, engine=name)
    for target in planned or ():
        if target.engine not in fleet.engines:
            out.selection.skip(target.id, "engine no longer in DOCKER_HOSTS", engine=target.engine)
    listed = await asyncio.gather(*(gather_engine(n, e) for n, e in used.items()))
    containers = [c for batch in listed for c in batch]
    bots = await bot_records(sessions, {c.bot_id for c in containers if c.bot_id})
    wanted = {t.id for t in planned} if planned is not None else None
    for c in sorted(containers, key=lambda c: (c.engine, c.created_at or now, c.id)):
        decision = container_decision(
            c,
            bots.get(c.bot_id or ""),
            instance=instance,
            grace=policy.container_grace,
            now=now,
        )
        out.judged.append((c, decision))
        if wanted is not None and c.id not in wanted:
            continue
        if decision.eligible:
            age = decision.age.total_seconds() if decision.age is not None else None
            out.targets.append(
                ContainerTarget(c.id, c.engine, c.bot_id, decision.reason, age, c.size_bytes)
            )
            if len(out.selection.sample) < SAMPLE_SIZE:
                out.selection.sample.append(c.id)
            if age is not None:
                lag = age - policy.container_grace.total_seconds()
                if len(out.selection.lag_seconds) < SKIPPED_LIMIT:
                    out.selection.lag_seconds.append(round(lag, 3))
        elif decision.orphaned or wanted is not None:
            prefix = "changed since the plan: " if wanted is not None else ""
            out.selection.skip(c.id, prefix + decision.reason, engine=c.engine)
    out.selection.found = len(out.targets)
    return out


# --- removal --------------------------------------------------------------------------------
async def remove_containers(
    ex: Executor,
    fleet: Fleet,
    targets: Sequence[ContainerTarget],
    tally: Tally,
    *,
    instance: str,
    concurrency: int,
    limit: int,
) -> None:
    """Per engine, ``concurrency`` at a time; a dead engine stops only its own share."""
    by_engine: dict[str, list[ContainerTarget]] = {}
    for target in targets[:limit]:
        by_engine.setdefault(target.engine, []).append(target)
    total = min(len(targets), limit)
    lookup = BotLookup(ex.sessions)
    reader = SqliteBotReader.for_engine(ex.sessions.kw.get("bind"))

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
                    await ex.checkpoint()
                except (Interrupted, LockLost) as exc:  # in-flight removals finish, no new ones
                    state["stop"] = exc
                    return
                attempted.add(t.id)
                try:
                    outcome: str | ContainerInfo = await _remove_one(
                        ex, engine, t, instance, lookup, reader
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
                            "stage": KIND_CONTAINERS,
                            "dependency": DEPENDENCY_DATABASE,
                            "message": f"{t.id[:12]}: bot check failed: {exc}"[:300],
                        }
                    )
                    return
                except Exception as exc:
                    tally.failed += 1
                    message = f"{t.id[:12]}: {type(exc).__name__}: {exc}"[:300]
                    tally.errors.append(
                        {"stage": KIND_CONTAINERS, "engine": name, "message": message}
                    )
                    return
            if isinstance(outcome, str):
                tally.skipped.append((t.id, outcome, name))
                return
            removed.append((t, outcome))
            if len(removed) >= AUDIT_EVERY:
                batch = removed[:]
                removed.clear()
                await _record_removed(ex, batch, tally)
                if ex.progress is not None:
                    ex.progress(KIND_CONTAINERS, tally.deleted, total)

        await asyncio.gather(*(one(t) for t in mine))
        await _record_removed(ex, removed, tally)
        if ex.progress is not None:
            ex.progress(KIND_CONTAINERS, tally.deleted, total)
        down = state["down"]
        if down is not None:
            tally.errors.append({"stage": KIND_CONTAINERS, "engine": name, "message": str(down)})
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
    ex: Executor,
    engine: ContainerEngine,
    target: ContainerTarget,
    instance: str,
    lookup: BotLookup,
    reader: SqliteBotReader | None = None,
) -> str | ContainerInfo:
    """Inspect again, look at the bot again, then remove. A str return is a skip reason.

    On Docker the three happen in one call of the engine's thread, so nothing but the bot's
    query comes between the last look at the container and its removal. The query: on a SQLite
    file, a read of its own in that thread (``reader``); otherwise on the event loop, shared with
    the other removals in flight.
    """

    def verdict(info: ContainerInfo, bot: BotRecord | None) -> str | None:
        decision = container_decision(
            info, bot, instance=instance, grace=ex.policy.container_grace, now=ex.clock()
        )
        return None if decision.eligible else decision.reason

    async def bot_of() -> BotRecord | None:
        try:
            return await lookup.get(target.bot_id)
        except Exception as exc:
            raise _BotCheckFailed(f"{type(exc).__name__}: {exc}") from exc

    try:
        if isinstance(engine, DockerEngine):
            loop = asyncio.get_running_loop()

            def check(info: ContainerInfo | None) -> str | None:  # in the engine's thread
                seen = _unchanged(target, info)
                if isinstance(seen, str):
                    return seen
                if reader is None:
                    bot = _wait_for(asyncio.run_coroutine_threadsafe(bot_of(), loop))
                else:
                    bot = _read(reader, target.bot_id)
                return verdict(seen, bot)

            return await engine.remove_verified(target.id, check)
        seen = _unchanged(target, await engine.inspect(target.id))
        if isinstance(seen, str):
            return seen
        reason = verdict(seen, await bot_of())
        if reason is not None:
            return reason
        await engine.remove(target.id)
        return seen
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
    return info


async def _record_removed(
    ex: Executor, removed: list[tuple[ContainerTarget, ContainerInfo]], tally: Tally
) -> None:
    if not removed:
        return
    tally.deleted += len(removed)
    at = ex.clock()
    for t, info in removed:
        tally.bytes_reclaimed += info.size_bytes or t.size_bytes or 0
        if t.age_seconds is not None:
            grace = ex.policy.container_grace.total_seconds()
            tally.lag_seconds.append(round(t.age_seconds - grace, 3))
    rows = [
        {
            "run_id": ex.run_id,
            "kind": KIND_CONTAINERS,
            "resource_id": t.id,
            "engine": t.engine,
            "reason": f"containers: {t.reason}",
            "actor": ex.actor,
            "snapshot": container_snapshot(info, t.size_bytes),
            "deleted_at": at,
        }
        for t, info in removed
    ]
    try:
        async with ex.sessions() as session, session.begin():
            await session.execute(insert(CleanupAudit), rows)
    except Exception as exc:
        # The containers are gone either way; say loudly that their audit is missing.
        log.error("audit of %d removed containers failed: %s", len(rows), exc)
        tally.errors.append(
            {
                "stage": KIND_CONTAINERS,
                "dependency": DEPENDENCY_DATABASE,
                "message": f"audit write failed for {len(rows)} removed containers: "
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
    }
