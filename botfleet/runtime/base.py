"""The container-engine Protocol: the one door through which bots, the reconciler and the
cleanup service reach an engine.

The Docker adapter (``docker.py``) implements it; unit tests of pure logic may use a small
in-memory fake of the same shape. Nothing outside ``runtime/`` asks which class it holds.
Every method is async but :meth:`ContainerEngine.open_events` and
:meth:`ContainerEngine.open_logs` (blocking streams, read in a thread) and the ``check`` of
:meth:`ContainerEngine.remove_verified` (called in the engine's own thread, between the last
look at the container and its removal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from botfleet.constants import LABEL_BOT_ID, LABEL_INSTANCE, LABEL_MANAGED, SWARM_LABEL_PREFIX
from botfleet.runtime.log_stream import LogQuery, LogStream


@dataclass(frozen=True)
class Resources:
    """CPU (in cores) and memory (in bytes) a bot may use at most, and what it is guaranteed."""

    cpu_limit: float | None = None
    memory_limit: int | None = None
    cpu_reservation: float | None = None
    memory_reservation: int | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """What a bot's workload is made of; labels must already carry botfleet's three.

    ``placement`` (swarm constraints such as ``node.labels.zone==eu``) and ``resources`` are
    honoured by the engines that can (a swarm); the others refuse a spec that asks for them."""

    name: str
    image: str
    command: Sequence[str] | None
    env: Mapping[str, str]
    labels: Mapping[str, str]
    network: str
    placement: Sequence[str] = ()
    resources: Resources | None = None


@dataclass(frozen=True)
class ContainerInfo:
    """A bot's workload as an engine reports it, at one moment: a container, or on a swarm a
    service, whose ``state`` and times are its current task's (``task_state`` then says which
    state the swarm gives that task, ``detail`` why, ``node`` where, ``version`` the service's
    ``Version.Index``)."""

    id: str
    name: str
    engine: str
    state: str  # created | running | paused | restarting | removing | exited | dead
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    size_bytes: int | None = None
    node: str | None = None
    task_state: str | None = None
    detail: str | None = None
    version: int | None = None
    # A swarm service scaled to zero whose task swarm still means to run: the stop was lost
    # (docs/reliability.md, "A stop swarm lost"). Never true of a plain container.
    stop_lost: bool = False

    @property
    def bot_id(self) -> str | None:
        return self.labels.get(LABEL_BOT_ID)

    @property
    def swarm_task(self) -> bool:
        """A container a swarm service runs: the service is what may go, never the task alone."""
        return any(key.startswith(SWARM_LABEL_PREFIX) for key in self.labels)

    def belongs_to(self, instance: str) -> bool:
        """True only if the container carries botfleet's labels for this instance (rule 2)."""
        return (
            self.labels.get(LABEL_MANAGED) == "true"
            and self.labels.get(LABEL_INSTANCE) == instance
            and bool(self.labels.get(LABEL_BOT_ID))
        )


class EventStream(Protocol):
    """A blocking iterator of engine events; ``close()`` from another thread ends it."""

    def __iter__(self) -> Iterator[Mapping[str, object]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Revival:
    """A bot's workload running again: ``fresh_env`` says whether the spec's environment (its
    new token) is the one in effect, or the workload kept the one it had."""

    info: ContainerInfo
    fresh_env: bool


@runtime_checkable
class ContainerEngine(Protocol):
    """One container engine. ``name`` is what a bot records in its ``engine`` column;
    ``workload_kind`` is the report kind its workloads are cleaned up under (``containers`` for
    a plain engine, ``services`` for a swarm). ``lists_in_full`` says whether ``list_managed``
    already carries what a cleanup decides on (when a workload stopped, its size), so that the
    selection need not inspect each one after listing them."""

    name: str
    workload_kind: str
    lists_in_full: bool

    async def ping(self) -> None:
        """Raise :class:`~botfleet.errors.EngineUnavailable` if the engine does not answer."""

    async def version(self) -> str: ...

    async def nodes(self) -> list[dict[str, Any]]:
        """The nodes of the cluster the engine manages (id, hostname, role, state,
        availability, leader); none for a plain engine."""

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start a container; on failure leave no container behind."""

    async def start(self, container_id: str) -> None: ...

    async def revive(self, container_id: str, spec: ContainerSpec) -> Revival | None:
        """Run a stopped workload again (a restore), with ``spec``'s environment where the
        engine can apply it; None if the workload no longer exists."""

    async def stop(self, container_id: str, timeout: float = 10) -> None:
        """Stop (not remove) a container; a missing or already stopped one is fine."""

    async def inspect(self, container_id: str, *, size: bool = False) -> ContainerInfo | None:
        """The container's current state, or None if it no longer exists; ``size`` asks the
        engine for its writable layer's size (``size_bytes``), which costs the engine time."""

    async def list_managed(self, instance: str) -> list[ContainerInfo]:
        """All containers (any state) that carry this instance's labels, re-checked client-side."""

    async def remove(self, container_id: str) -> None:
        """Remove one stopped container; never forced, never its volumes."""

    async def remove_verified(
        self, container_id: str, check: Callable[[ContainerInfo | None], str | None]
    ) -> ContainerInfo | str:
        """Inspect, ask ``check`` (None: go ahead; a str: the reason not to), then remove,
        with nothing between the last look at the container and its removal but ``check``.
        Returns what was removed, or the reason it was not; raises
        :class:`~botfleet.errors.ContainerConflict` if the engine refuses (e.g. it runs)."""

    def open_events(self, instance: str) -> EventStream:
        """This instance's container events from now on (a blocking call: run it in a thread);
        :class:`~botfleet.errors.EngineUnavailable` if the engine cannot stream them."""

    def open_logs(self, container_id: str, query: LogQuery) -> LogStream:
        """The workload's stdout and stderr lines with their timestamps (a blocking call and
        stream: run and read them in a thread); ``query.follow`` keeps it open for new lines
        until the workload stops or the stream is closed. Raises
        :class:`~botfleet.errors.WorkloadGone` if the workload no longer exists,
        :class:`~botfleet.errors.EngineUnavailable` if the engine does not answer and
        :class:`~botfleet.errors.LogsUnreadable` if it answers but cannot give the logs."""

    async def close(self) -> None: ...


# What a group removal says of each workload: removed (what it was), why not, or what failed.
GroupOutcome = ContainerInfo | str | BaseException
# Asked once about a whole group after its look: by id, None to go ahead or the reason not to.
GroupCheck = Callable[[Mapping[str, ContainerInfo | None]], Mapping[str, str | None]]


@runtime_checkable
class RemovesInGroups(Protocol):
    """An engine that looks at several workloads in one go before removing them (a swarm:
    ``runtime/swarm_removal.py``); the cleanup hands it groups instead of single removals."""

    async def remove_verified_group(
        self, ids: Sequence[str], check: GroupCheck
    ) -> list[GroupOutcome]:
        """One look at every workload of ``ids``, then ``check`` on all of them, then the
        removals it clears; an outcome per id, in order."""
