"""What reconciliation changes, decided from a snapshot alone (pure): a bot's status from its
container's state, and the containers of deleted bots still running, to be stopped — and the
services of purged bots whose stop swarm lost, to be stopped again."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from botfleet.constants import (
    PENDING_GRACE_SECONDS,
    STATUS_DELETED,
    STATUS_EXITED,
    STATUS_FAILED,
    STATUS_PENDING,
    STATUS_RUNNING,
    STATUS_STOPPED,
)
from botfleet.runtime.base import ContainerInfo

# Exit codes of a container stopped from outside: 128 + SIGTERM and 128 + SIGKILL (docker stop).
STOP_EXIT_CODES = frozenset({137, 143})
ACTIVE_STATES = frozenset({"running", "restarting", "paused"})


# A swarm task's states (https://docs.docker.com/engine/swarm/how-swarm-mode-works/swarm-task-states/)
# before it runs, and when its node is gone and swarm has still to reschedule it: pending.
TASK_PENDING = frozenset(
    {
        "new",
        "allocated",
        "pending",
        "assigned",
        "accepted",
        "preparing",
        "ready",
        "starting",
        "orphaned",
    }
)
TASK_STOPPED = frozenset({"shutdown", "remove"})


def container_status(info: ContainerInfo | None) -> tuple[str, int | None]:
    """The bot status a container state means, with the exit code where there is one.

    exit 0 is ``exited``; a container stopped by a signal (docker stop) is ``stopped``; any other
    exit, a dead container or a missing one is ``failed``. On a swarm the current task's state
    decides: before it runs ``pending``, shut down by swarm ``stopped``, rejected ``failed``.
    """
    if info is None:
        return STATUS_FAILED, None
    if info.task_state is not None:
        return _task_status(info.task_state, info.exit_code)
    if info.state in ("running", "restarting"):
        return STATUS_RUNNING, None
    if info.state in ("created", "paused"):
        return STATUS_STOPPED, None
    if info.state == "exited":
        if info.exit_code == 0:
            return STATUS_EXITED, 0
        if info.exit_code in STOP_EXIT_CODES:
            return STATUS_STOPPED, info.exit_code
        return STATUS_FAILED, info.exit_code
    return STATUS_FAILED, info.exit_code  # dead, removing


def _task_status(state: str, exit_code: int | None) -> tuple[str, int | None]:
    if state == "running":
        return STATUS_RUNNING, None
    if state in TASK_PENDING:
        return STATUS_PENDING, None
    if state in TASK_STOPPED:
        return STATUS_STOPPED, exit_code
    if state == "complete" or exit_code == 0:
        return STATUS_EXITED, 0
    if exit_code in STOP_EXIT_CODES:
        return STATUS_STOPPED, exit_code
    return STATUS_FAILED, exit_code  # failed, rejected


@dataclass(frozen=True)
class BotView:
    """The columns reconciliation reads, as they were when the snapshot was taken."""

    id: uuid.UUID
    status: str
    exit_code: int | None
    container_id: str | None
    engine: str | None
    deleted: bool
    created_at: datetime
    node: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class StatusChange:
    bot_id: uuid.UUID
    old_status: str
    status: str
    exit_code: int | None
    deleted: bool
    node: str | None = None  # where its current task runs (a swarm), and why it is as it is
    detail: str | None = None


@dataclass(frozen=True)
class StopContainer:
    bot_id: uuid.UUID
    engine: str
    container_id: str


@dataclass
class ReconcilePlan:
    changes: list[StatusChange] = field(default_factory=list)
    stops: list[StopContainer] = field(default_factory=list)

    def extend(self, other: ReconcilePlan) -> None:
        """Add another part of the fleet's plan (a pass plans its bots a page at a time)."""
        self.changes.extend(other.changes)
        self.stops.extend(other.stops)


def plan_reconcile(
    bots: Iterable[BotView],
    containers: Mapping[str, Sequence[ContainerInfo]],
    *,
    now: datetime,
) -> ReconcilePlan:
    """What to change, given bots and the containers of every *reachable* engine (by name).

    A bot on an engine missing from ``containers`` is left alone: absence of evidence is not a
    failed container. A pending bot younger than the grace period is a create in flight.
    """
    by_id = {c.id: c for infos in containers.values() for c in infos}
    active_by_bot: dict[str, list[ContainerInfo]] = {}
    for info in by_id.values():
        if info.state in ACTIVE_STATES and info.bot_id:
            active_by_bot.setdefault(info.bot_id, []).append(info)
    plan = ReconcilePlan()
    for bot in bots:
        if bot.deleted:
            # Finish the delete: stop whatever still runs under this bot's label.
            for info in active_by_bot.get(str(bot.id), []):
                plan.stops.append(StopContainer(bot.id, info.engine, info.id))
            target = (STATUS_DELETED, bot.exit_code, bot.node, bot.detail)
        elif bot.container_id is None:
            old = bot.created_at < now - timedelta(seconds=PENDING_GRACE_SECONDS)
            if bot.status != STATUS_PENDING or not old:
                continue
            target = (STATUS_FAILED, None, None, None)
        elif bot.engine not in containers:
            continue
        else:
            current = by_id.get(bot.container_id)
            status, exit_code = container_status(current)
            where = (current.node, current.detail) if current is not None else (None, None)
            target = (status, exit_code, *where)
        if target != (bot.status, bot.exit_code, bot.node, bot.detail):
            status, exit_code, node, detail = target
            plan.changes.append(
                StatusChange(bot.id, bot.status, status, exit_code, bot.deleted, node, detail)
            )
    return plan


def plan_lost_stops(
    containers: Mapping[str, Sequence[ContainerInfo]], rowless: set[uuid.UUID]
) -> list[StopContainer]:
    """Workloads of bots with no row (``rowless``: purged since they were deleted) whose stop
    swarm lost: their service is at zero replicas, as botfleet's delete left it, yet a task is
    still meant to run. Stopped again, since nothing else would: the reconciler stops only the
    workloads of rows it reads, and the cleanup removes only stopped ones (safety rule 6). A
    row-less workload still running for any other reason is left to the operator
    (docs/operations.md, BotfleetOrphansGrowing)."""
    stops = []
    for infos in containers.values():
        for info in infos:
            if not (info.stop_lost and info.bot_id):
                continue
            try:
                bot_id = uuid.UUID(info.bot_id)
            except ValueError:
                continue
            if bot_id in rowless:
                stops.append(StopContainer(bot_id, info.engine, info.id))
    return stops
