"""A group of a swarm's services removed after one look at all of them (safety rule 6).

Looked at one by one, each removal costs three calls of the manager — its service, its tasks,
its ``DELETE`` — where ``docker service rm`` makes one (BENCHMARKS.md, "Swarm"). A group is
looked at in two calls (``GET /services?filters=id…``, ``GET /tasks?filters=service…``), judged
whole by the caller's ``check`` (which reads the bots' rows after the look), then removed one
service after the other in the same thread, as the CLI does: swarm's raft store serialises the
removals anyway, so the last of a group goes about as soon after the look as a single removal
with its peers in flight did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import requests
from docker.errors import NotFound

from botfleet.errors import EngineUnavailable
from botfleet.runtime import swarm_http, swarm_specs
from botfleet.runtime.base import ContainerInfo, GroupCheck, GroupOutcome
from botfleet.runtime.swarm_managers import Managers, api

if TYPE_CHECKING:
    import docker


class SwarmEngine(Protocol):
    """What a group's removal uses of :class:`~botfleet.runtime.swarm.SwarmEngine`."""

    name: str
    managers: Managers

    def workload_of(self, client: docker.DockerClient, service_id: str) -> ContainerInfo | None: ...

    def node_names(
        self, client: docker.DockerClient, tasks: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> dict[str, str]: ...

    def remove_service(self, client: docker.DockerClient, service_id: str) -> None: ...


def workloads(
    engine: SwarmEngine, client: docker.DockerClient, ids: Sequence[str]
) -> dict[str, ContainerInfo | None]:
    """Several services by id, with their tasks, in two calls; one that is gone is absent."""
    plain, wanted = engine.managers.plain(client), set(ids)
    listed = (
        swarm_http.services_where(plain, {"id": list(ids)})
        if plain is not None
        else api(client).services(filters={"id": list(ids)})
    )
    found = {str(s["ID"]): s for s in listed if str(s["ID"]) in wanted}  # ids match prefixes
    if not found:
        return {}
    if plain is not None:
        tasks = swarm_http.tasks_of(plain, list(found))
    else:
        try:
            tasks = api(client).tasks(filters={"service": list(found)})
        except NotFound:
            tasks = None
    if tasks is None:  # one went meanwhile (the filter names each): look at each alone
        return {i: engine.workload_of(client, i) for i in found}
    by_service = swarm_specs.tasks_by_service(tasks, found)
    nodes = engine.node_names(client, by_service)
    return {i: swarm_specs.workload(engine.name, s, by_service[i], nodes) for i, s in found.items()}


def remove_group(
    engine: SwarmEngine, client: docker.DockerClient, ids: Sequence[str], check: GroupCheck
) -> list[GroupOutcome]:
    """Look at every service of ``ids`` once, ask ``check`` about all of them, remove those it
    clears one after the other. A manager that stops answering midway ends the group there:
    the removals already made stay reported, the rest are failed, none is tried elsewhere."""
    found = workloads(engine, client, ids)
    reasons = check(found)
    out: list[GroupOutcome] = []
    for index, service_id in enumerate(ids):
        info, reason = found.get(service_id), reasons.get(service_id)
        if reason is not None or info is None:
            out.append(reason or "already gone")
            continue
        try:
            engine.remove_service(client, service_id)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            down = EngineUnavailable(engine.name, f"{type(exc).__name__}: {exc}"[:200])
            return out + [down] * (len(ids) - index)
        except Exception as exc:
            out.append(exc)
            continue
        out.append(info)
    return out
