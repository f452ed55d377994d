"""The selection of the engines' workloads — containers on plain engines, services on a swarm:
which may go, and why the others stay.

Every engine of the kind is asked (never trusting its label filter alone), through the plan's
scope (:mod:`botfleet.cleanup.container_scope`); each workload is judged with the row its bot-id
label names (:func:`~botfleet.cleanup.eligibility.container_decision`). A dead engine fails its
own share only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botfleet.cleanup.bot_lookup import bot_records
from botfleet.cleanup.container_scope import ContainerScope, ContainerTarget, EveryContainer
from botfleet.cleanup.eligibility import Decision, container_decision
from botfleet.cleanup.plan import SAMPLE_SIZE, SKIPPED_LIMIT, Selection
from botfleet.cleanup.policy import Policy
from botfleet.constants import KIND_CONTAINERS, REASON_BREAKER_OPEN
from botfleet.errors import EngineUnavailable
from botfleet.runtime.base import ContainerEngine, ContainerInfo
from botfleet.runtime.fleet import Fleet
from botfleet.store.session import SessionFactory

log = logging.getLogger(__name__)


@dataclass
class ContainerSelection:
    """What to remove, what to leave, and the engines that failed."""

    selection: Selection
    targets: list[ContainerTarget] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Every container judged, with its decision: the orphans view shows them all.
    judged: list[tuple[ContainerInfo, Decision]] = field(default_factory=list)


async def select_containers(
    fleet: Fleet,
    sessions: SessionFactory,
    *,
    kind: str = KIND_CONTAINERS,
    instance: str,
    policy: Policy,
    now: datetime,
    concurrency: int,
    skip_engines: Collection[str] = frozenset(),
    scope: ContainerScope = EveryContainer(),
) -> ContainerSelection:
    """Judge what ``scope`` finds on every engine of ``kind`` but ``skip_engines`` (open
    breakers)."""
    out = ContainerSelection(Selection(kind))
    engines = fleet.of_kind(kind)

    async def gather_engine(name: str, engine: ContainerEngine) -> list[ContainerInfo]:
        try:
            found, gone = await scope.look(engine, instance, concurrency)
        except EngineUnavailable as exc:
            out.errors.append({"stage": kind, "engine": name, "message": str(exc)})
            return []
        except Exception as exc:  # one engine's surprise must not sink the others
            log.exception("listing %s on engine %s failed", kind, name)
            message = f"{type(exc).__name__}: {exc}"[:300]
            out.errors.append({"stage": kind, "engine": name, "message": message})
            return []
        for item in gone:
            out.selection.skip(item, scope.changed_prefix + "already gone", engine=name)
        return found

    used = {n: e for n, e in engines.items() if n not in skip_engines}
    for name in sorted(set(engines) & set(skip_engines)):
        for item in scope.expected(name) or [f"engine:{name}"]:
            out.selection.skip(item, REASON_BREAKER_OPEN, engine=name)
    for target in scope.departed(engines):
        out.selection.skip(target.id, "engine no longer in DOCKER_HOSTS", engine=target.engine)
    listed = await asyncio.gather(*(gather_engine(n, e) for n, e in used.items()))
    containers = [c for batch in listed for c in batch]
    bots = await bot_records(sessions, {c.bot_id for c in containers if c.bot_id})
    for c in sorted(containers, key=lambda c: (c.engine, c.created_at or now, c.id)):
        decision = container_decision(
            c,
            bots.get(c.bot_id or ""),
            instance=instance,
            grace=policy.container_grace,
            now=now,
        )
        out.judged.append((c, decision))
        planned = scope.version_of(c.id)
        if decision.eligible and planned is not None and c.version != planned:
            changed = f"version {planned} is now {c.version}"
            out.selection.skip(c.id, scope.changed_prefix + changed, engine=c.engine)
        elif decision.eligible:
            age = decision.age.total_seconds() if decision.age is not None else None
            out.targets.append(
                ContainerTarget(
                    c.id, c.engine, c.bot_id, decision.reason, age, c.size_bytes, c.version
                )
            )
            if len(out.selection.sample) < SAMPLE_SIZE:
                out.selection.sample.append(c.id)
            if age is not None:
                lag = age - policy.container_grace.total_seconds()
                if len(out.selection.lag_seconds) < SKIPPED_LIMIT:
                    out.selection.lag_seconds.append(round(lag, 3))
        elif scope.reports(decision):
            out.selection.skip(c.id, scope.changed_prefix + decision.reason, engine=c.engine)
    out.selection.found = len(out.targets)
    return out
