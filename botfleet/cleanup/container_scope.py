"""Which workloads a run looks at — containers on plain engines, services on a swarm: every one
this instance has (a fresh plan), or exactly a stored plan's targets, each looked at again (a
plan applied by ``plan_id``).

The plan picks its scope per kind once, when it is made or loaded; the selection then has one
road through either (:mod:`botfleet.cleanup.container_selection`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botfleet.cleanup.eligibility import Decision
from botfleet.constants import REMOVABLE_STATES
from botfleet.runtime.base import ContainerEngine, ContainerInfo


@dataclass(frozen=True)
class ContainerTarget:
    """A workload the plan would remove: by id, on one engine, with the bot it belonged to."""

    id: str
    engine: str
    bot_id: str | None
    reason: str
    age_seconds: float | None = None
    size_bytes: int | None = None  # its writable layer when selected ("bytes reclaimed")
    version: int | None = None  # a service's Version.Index when selected: it must not change

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "engine": self.engine,
            "bot_id": self.bot_id,
            "reason": self.reason,
            "age_seconds": self.age_seconds,
            "size_bytes": self.size_bytes,
        }
        if self.version is not None:
            out["version"] = self.version
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerTarget:
        return cls(
            id=data["id"],
            engine=data["engine"],
            bot_id=data.get("bot_id"),
            reason=data.get("reason", ""),
            age_seconds=data.get("age_seconds"),
            size_bytes=data.get("size_bytes"),
            version=data.get("version"),
        )


class ContainerScope(Protocol):
    """What the container selection asks of a plan's scope."""

    @property
    def targets(self) -> Sequence[ContainerTarget]: ...

    # How a container that may not go is explained (a stored plan's target "changed since").
    changed_prefix: str

    def reports(self, decision: Decision) -> bool:
        """Is a container left alone listed as skipped?"""

    def expected(self, engine: str) -> list[str]:
        """The ids this scope expects on ``engine`` (listed as skipped if it cannot be asked)."""

    def departed(self, engines: Collection[str]) -> list[ContainerTarget]:
        """Targets on engines no longer in ``DOCKER_HOSTS``."""

    def version_of(self, workload_id: str) -> int | None:
        """The version the plan saw of a workload (a service's), if it must still be it."""

    async def look(
        self, engine: ContainerEngine, instance: str, concurrency: int
    ) -> tuple[list[ContainerInfo], list[str]]:
        """The containers to judge on ``engine``, and the expected ids that are gone."""


@dataclass(frozen=True)
class EveryContainer:
    """A fresh plan: every container of this instance, listed on every engine."""

    changed_prefix = ""

    @property
    def targets(self) -> Sequence[ContainerTarget]:
        return ()

    def reports(self, decision: Decision) -> bool:
        return decision.orphaned  # a live bot's own container is not a skip

    def expected(self, engine: str) -> list[str]:
        return []

    def departed(self, engines: Collection[str]) -> list[ContainerTarget]:
        return []

    def version_of(self, workload_id: str) -> int | None:
        return None

    async def look(
        self, engine: ContainerEngine, instance: str, concurrency: int
    ) -> tuple[list[ContainerInfo], list[str]]:
        """A plain engine's listing lacks ``FinishedAt``: the stopped ones are inspected to learn
        how long they stopped, with the size of their writable layer (the engine computes it on
        request): measured once here, so the look right before removal can skip it. A swarm's
        listing already holds every service's tasks."""
        listed = await engine.list_managed(instance)
        if engine.lists_in_full:
            return listed, []
        gate = asyncio.Semaphore(concurrency)

        async def one(c: ContainerInfo) -> ContainerInfo | None:
            if c.state not in REMOVABLE_STATES:
                return c
            async with gate:
                return await engine.inspect(c.id, size=True)

        found = await asyncio.gather(*(one(c) for c in listed))
        return [c for c in found if c is not None], []


@dataclass(frozen=True)
class PlannedContainers:
    """A stored plan: exactly its targets, each inspected again; nothing else is considered."""

    targets: tuple[ContainerTarget, ...]
    changed_prefix = "changed since the plan: "

    def reports(self, decision: Decision) -> bool:
        return True  # every target that stays is explained

    def expected(self, engine: str) -> list[str]:
        return [t.id for t in self.targets if t.engine == engine]

    def departed(self, engines: Collection[str]) -> list[ContainerTarget]:
        return [t for t in self.targets if t.engine not in engines]

    def version_of(self, workload_id: str) -> int | None:
        return next((t.version for t in self.targets if t.id == workload_id), None)

    async def look(
        self, engine: ContainerEngine, instance: str, concurrency: int
    ) -> tuple[list[ContainerInfo], list[str]]:
        mine = [t for t in self.targets if t.engine == engine.name]
        gate = asyncio.Semaphore(concurrency)

        async def inspect(t: ContainerTarget) -> ContainerInfo | None:
            async with gate:
                return await engine.inspect(t.id)

        infos = await asyncio.gather(*(inspect(t) for t in mine))
        gone = [t.id for t, info in zip(mine, infos, strict=True) if info is None]
        return [i for i in infos if i is not None], gone
