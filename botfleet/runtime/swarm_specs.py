"""What botfleet asks a swarm for, and how it reads the answer back. Pure: the Engine API's JSON in
and out, no calls.

A bot is a replicated service of one replica. Its workload, as the rest of botfleet sees it (a
:class:`~botfleet.runtime.base.ContainerInfo`), is the service, with the state of its current task
(the newest one): that task's swarm state, exit code, error and node say how the bot is doing. For
the cleanup a service is running while any task that swarm wants running has not reached a final
state (wanted running or not: a task being stopped runs until it has stopped), and it stopped
when its last task did.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botfleet.constants import BOT_STOP_TIMEOUT_SECONDS
from botfleet.errors import ContainerFailed, InvalidInput
from botfleet.runtime.base import ContainerInfo, ContainerSpec
from botfleet.runtime.docker import parse_docker_time

# https://docs.docker.com/engine/swarm/how-swarm-mode-works/swarm-task-states/
FINAL_TASK_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
NANO = 1_000_000_000


def service_spec(spec: ContainerSpec, *, restart: str, image: str | None = None) -> dict[str, Any]:
    """The ServiceSpec of a bot: one replica, its labels on the service and on its containers,
    ``restart`` (``none`` or ``on-failure:N``), placement constraints and resources."""
    container: dict[str, Any] = {
        "Image": image or spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": dict(spec.labels),
        # docker-init as PID 1, as on a plain engine: a shell-script bot stops on SIGTERM.
        "Init": True,
        "StopGracePeriod": BOT_STOP_TIMEOUT_SECONDS * NANO,
    }
    if spec.command:
        container["Args"] = list(spec.command)
    task: dict[str, Any] = {"ContainerSpec": container, "RestartPolicy": restart_policy(restart)}
    if spec.network != "none":  # swarm has no "none" network: a task attached to none has none
        task["Networks"] = [{"Target": spec.network}]
    if spec.placement:
        task["Placement"] = {"Constraints": list(spec.placement)}
    if spec.resources is not None:
        task["Resources"] = resources(spec.resources)
    return {
        "Name": spec.name,
        "Labels": dict(spec.labels),
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 1}},
    }


def tasks_by_service(
    tasks: Iterable[Mapping[str, Any]], services: Iterable[str] = ()
) -> dict[str, list[Mapping[str, Any]]]:
    """Tasks grouped by their service's id; each of ``services`` present, with none if need be."""
    grouped: dict[str, list[Mapping[str, Any]]] = {s: [] for s in services}
    for task in tasks:
        grouped.setdefault(str(task.get("ServiceID")), []).append(task)
    return grouped


def created(engine: str, service_id: str, body: Mapping[str, Any]) -> ContainerInfo:
    """A service just created from ``body``, as the workload of a bot: no task yet."""
    return ContainerInfo(
        id=service_id,
        name=str(body.get("Name", "")),
        engine=engine,
        state="created",
        labels=dict(body.get("Labels") or {}),
        task_state="new",
    )


def restart_policy(restart: str) -> dict[str, Any]:
    if restart == "none":
        return {"Condition": "none"}
    attempts = int(restart.split(":", 1)[1])
    return {"Condition": "on-failure", "MaxAttempts": attempts, "Delay": NANO}


def resources(res: Any) -> dict[str, Any]:
    limits: dict[str, int] = {}
    reservations: dict[str, int] = {}
    if res.cpu_limit is not None:
        limits["NanoCPUs"] = round(res.cpu_limit * NANO)
    if res.memory_limit is not None:
        limits["MemoryBytes"] = res.memory_limit
    if res.cpu_reservation is not None:
        reservations["NanoCPUs"] = round(res.cpu_reservation * NANO)
    if res.memory_reservation is not None:
        reservations["MemoryBytes"] = res.memory_reservation
    return {"Limits": limits, "Reservations": reservations}


def with_env(service: Mapping[str, Any], env: Mapping[str, str], replicas: int) -> dict[str, Any]:
    """The service's spec with a new environment (a restored bot's new token) and replicas."""
    spec = _spec_copy(service)
    spec["TaskTemplate"]["ContainerSpec"]["Env"] = [f"{k}={v}" for k, v in env.items()]
    spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    return spec


def with_replicas(service: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    spec = _spec_copy(service)
    spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    return spec


def _spec_copy(service: Mapping[str, Any]) -> dict[str, Any]:
    spec = dict(service.get("Spec") or {})
    template = dict(spec.get("TaskTemplate") or {})
    template["ContainerSpec"] = dict(template.get("ContainerSpec") or {})
    # Asking the nodes to re-create the task even if nothing else changed.
    template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
    spec["TaskTemplate"] = template
    return spec


def workload(
    engine: str,
    service: Mapping[str, Any],
    tasks: Sequence[Mapping[str, Any]],
    nodes: Mapping[str, str],
) -> ContainerInfo:
    """A service with its tasks (any order) as the workload of a bot."""
    spec = service.get("Spec") or {}
    ordered = sorted(tasks, key=_task_order)
    current = ordered[-1] if ordered else None
    # A task swarm is stopping still runs until it has stopped: only a final state is final.
    live = [t for t in ordered if not _final(t)]
    finished = [_time(t) for t in ordered if _final(t)]
    if live:
        state = "running"
    elif ordered:
        state = "exited"
    else:
        state = "created"
    task_state, exit_code, detail, node = "new", None, None, None
    if current is not None:
        status = current.get("Status") or {}
        task_state = str(status.get("State") or "new")
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        detail = str(status.get("Err") or status.get("Message") or "") or None
        node = nodes.get(str(current.get("NodeID") or "")) or current.get("NodeID") or None
    return ContainerInfo(
        id=str(service["ID"]),
        name=str(spec.get("Name", "")),
        engine=engine,
        state=state,
        labels=dict(spec.get("Labels") or {}),
        created_at=parse_docker_time(service.get("CreatedAt")),
        started_at=_time(live[-1]) if live else None,
        finished_at=max((t for t in finished if t is not None), default=None) if not live else None,
        exit_code=exit_code if task_state in FINAL_TASK_STATES else None,
        node=node,
        task_state=task_state,
        detail=detail,
        version=int((service.get("Version") or {}).get("Index") or 0),
        stop_lost=_wanted_replicas(service) == 0 and any(_meant_to_run(t) for t in live),
    )


def _wanted_replicas(service: Mapping[str, Any]) -> int | None:
    """The replicas a replicated service's spec asks for (None for any other mode)."""
    mode = (service.get("Spec") or {}).get("Mode") or {}
    wanted = (mode.get("Replicated") or {}).get("Replicas")
    return None if wanted is None else int(wanted)


def _meant_to_run(task: Mapping[str, Any]) -> bool:
    """Swarm still means the task to run: its desired state is not yet shut down or removed."""
    return str(task.get("DesiredState") or "") in ("new", "ready", "running")


def node_names(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Node id → the name a bot shows: its hostname, with the id's start where two share one."""
    found = [(str(n["ID"]), str((n.get("Description") or {}).get("Hostname") or "")) for n in nodes]
    counts: dict[str, int] = {}
    for _, host in found:
        counts[host] = counts.get(host, 0) + 1
    return {i: (h if h and counts[h] == 1 else f"{h or 'node'}/{i[:12]}") for i, h in found}


def node_summaries(nodes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(n["ID"]),
            "hostname": str((n.get("Description") or {}).get("Hostname") or ""),
            "role": str((n.get("Spec") or {}).get("Role") or ""),
            "availability": str((n.get("Spec") or {}).get("Availability") or ""),
            "state": str((n.get("Status") or {}).get("State") or ""),
            "leader": bool((n.get("ManagerStatus") or {}).get("Leader")),
        }
        for n in nodes
    ]


def _final(task: Mapping[str, Any]) -> bool:
    return str((task.get("Status") or {}).get("State") or "") in FINAL_TASK_STATES


def _task_order(task: Mapping[str, Any]) -> tuple[datetime, int]:
    # By creation: a task's Version.Index moves on with every change of its status.
    created = parse_docker_time(task.get("CreatedAt")) or datetime.min.replace(tzinfo=UTC)
    return created, int((task.get("Version") or {}).get("Index") or 0)


def _time(task: Mapping[str, Any]) -> datetime | None:
    return parse_docker_time((task.get("Status") or {}).get("Timestamp"))


def refusal(engine: str, message: str, spec: ContainerSpec) -> Exception:
    """What swarm refused, named by the field of the request that asked for it."""
    # Swarm answers these with 400 or with 500 ("rpc error: code = Unknown desc = …"), in its
    # own words: a constraint's parts, or the words of resources, say which field it was.
    message = message[:300]
    lowered = message.lower()
    parts = {p.strip() for c in spec.placement for p in re.split("==|!=", c, maxsplit=1)}
    if "constraint" in lowered or any(p and p in message for p in parts):
        return InvalidInput("placement", message)
    if any(word in lowered for word in ("resources", "nanocpus", "memory")):
        return InvalidInput("resources", message)
    if "image" in lowered or "reference format" in lowered:
        return InvalidInput("image", message)
    return ContainerFailed(engine, message)
