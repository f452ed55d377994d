"""The engines botfleet drives: several plain Docker Engines (``DOCKER_HOSTS``), among which it
places new bots itself, or one swarm (``BOT_RUNTIME=swarm``, ``DOCKER_HOSTS`` its managers),
which places them on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from botfleet.config import Settings
from botfleet.constants import KIND_SERVICES
from botfleet.errors import EngineUnavailable, InvalidInput, NoEngineAvailable
from botfleet.runtime.base import ContainerEngine, Resources
from botfleet.runtime.docker import DockerEngine
from botfleet.runtime.swarm import SwarmEngine


class Fleet:
    """The engines botfleet drives, keyed by the name each bot records in ``bots.engine``."""

    def __init__(self, engines: Sequence[ContainerEngine]) -> None:
        self.engines: dict[str, ContainerEngine] = {e.name: e for e in engines}

    @classmethod
    def from_settings(cls, settings: Settings) -> Fleet:
        hosts, pull = settings.docker_host_list, settings.bot_image_pull
        if settings.bot_runtime == "swarm":
            restart = settings.bot_restart_policy
            return cls([SwarmEngine(hosts, restart=restart, pull=pull)])
        return cls([DockerEngine(url, pull=pull) for url in hosts])

    def of_kind(self, kind: str) -> dict[str, ContainerEngine]:
        """The engines whose workloads are cleaned up as ``kind`` (containers or services)."""
        return {n: e for n, e in self.engines.items() if e.workload_kind == kind}

    def check_supported(self, placement: Sequence[str], resources: Resources | None) -> None:
        """Placement and resources are a swarm's to honour: on plain engines they are refused
        before anything else is looked at (a 422 naming the field, not a 409 or a half-made
        bot)."""
        if any(e.workload_kind == KIND_SERVICES for e in self.engines.values()):
            return
        if placement:
            raise InvalidInput("placement", "swarm constraints need BOT_RUNTIME=swarm")
        if resources is not None:
            raise InvalidInput("resources", "limits and reservations need BOT_RUNTIME=swarm")

    @property
    def names(self) -> list[str]:
        return list(self.engines)

    def get(self, name: str | None) -> ContainerEngine:
        if name is None or name not in self.engines:
            raise EngineUnavailable(str(name), "not in DOCKER_HOSTS")
        return self.engines[name]

    async def reachable(self, timeout: float = 3.0) -> tuple[list[str], list[str]]:
        """Names of the engines that answer a ping, and reasons for those that do not."""

        async def probe(engine: ContainerEngine) -> str | None:
            try:
                await asyncio.wait_for(engine.ping(), timeout)
            except (EngineUnavailable, TimeoutError) as exc:
                return f"{engine.name}: {exc}" if str(exc) else f"{engine.name}: timeout"
            return None

        answers = await asyncio.gather(*(probe(e) for e in self.engines.values()))
        up = [name for name, err in zip(self.engines, answers, strict=True) if err is None]
        return up, [err for err in answers if err is not None]

    async def place(self, live_bots: Mapping[str, int]) -> ContainerEngine:
        """The reachable engine with the fewest live bots (ties: the order of DOCKER_HOSTS). A
        swarm is one engine: it takes every bot and places each on a node of its choosing, so
        it is not pinged first (its create asks the managers in turn and says 503 if none
        answers; a ping per create cost as much as the create)."""
        if len(self.engines) == 1:
            only = next(iter(self.engines.values()))
            if only.workload_kind == KIND_SERVICES:
                return only
        up, reasons = await self.reachable()
        if not up:
            raise NoEngineAvailable(self.names, reasons)
        return self.engines[min(up, key=lambda n: (live_bots.get(n, 0), self.names.index(n)))]

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self.engines.values()))
