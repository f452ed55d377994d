"""A Docker Swarm as one engine (``BOT_RUNTIME=swarm``): a bot is a service of one replica, and
swarm — not botfleet — places, restarts and reschedules it.

``DOCKER_HOSTS`` names the swarm's managers; every call goes to the first that answers, and a
manager that does not (or is no longer a manager) is passed over for the next. What botfleet
asks and reads back is :mod:`botfleet.runtime.swarm_specs`. Deleting a bot scales its service to
zero (nothing is removed); restoring it scales it back with a new token; only the cleanup removes
a service, after looking at it again (safety rule 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import docker
from docker.errors import APIError, NotFound

from botfleet.constants import KIND_SERVICES, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.errors import ContainerFailed, LogsUnreadable, WorkloadGone
from botfleet.runtime import swarm_http, swarm_removal, swarm_specs
from botfleet.runtime.base import (
    ContainerInfo,
    ContainerSpec,
    EventStream,
    GroupCheck,
    GroupOutcome,
    Revival,
)
from botfleet.runtime.images import PULL_ALWAYS, classify
from botfleet.runtime.log_stream import EngineLogStream, LogQuery, LogStream, open_engine_logs
from botfleet.runtime.swarm_managers import Managers, api, manager_info

T = TypeVar("T")
log = logging.getLogger(__name__)
SWARM_ENGINE = "swarm"
_UPDATE_ATTEMPTS = 5


class SwarmEngine:
    """A :class:`~botfleet.runtime.base.ContainerEngine` whose workloads are services."""

    workload_kind = KIND_SERVICES
    lists_in_full = True  # a listing carries every service's tasks: nothing to inspect after

    def __init__(
        self,
        managers: Sequence[str],
        *,
        name: str = SWARM_ENGINE,
        restart: str = "on-failure:3",
        pull: str = "if-not-present",
        timeout: float = 30.0,
    ) -> None:
        self.managers = Managers(managers, engine=name, timeout=timeout)
        self.name = name
        self.restart = restart
        self.pull = pull
        self._nodes: dict[str, str] = {}
        self._threads = ThreadPoolExecutor(32, thread_name_prefix="swarm-engine")

    async def _call(self, fn: Callable[[docker.DockerClient], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.managers.call, fn)

    # --- the Protocol ----------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._call(manager_info)

    async def version(self) -> str:
        info = await self._call(lambda c: c.version())
        return str(info.get("Version", "unknown"))

    async def nodes(self) -> list[dict[str, Any]]:
        """The swarm's nodes: id, hostname, role, state, availability (``botfleet doctor``)."""
        return swarm_specs.node_summaries(await self._call(lambda c: api(c).nodes()))

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        def create(client: docker.DockerClient) -> ContainerInfo:
            image = self._resolved(client, spec.image)
            body = swarm_specs.service_spec(spec, restart=self.restart, image=image)
            try:
                created = api(client).create_service(
                    body["TaskTemplate"],
                    name=body["Name"],
                    labels=body["Labels"],
                    mode=body["Mode"],
                )
            except APIError as exc:
                raise swarm_specs.refusal(self.name, str(exc.explanation or exc), spec) from exc
            # No inspect after the create: a new service has no task yet worth reading (its
            # bot is pending until the reconciler sees it run), and the inspect was as many
            # engine calls again as the create (BENCHMARKS.md, "Swarm").
            return swarm_specs.created(self.name, str(created["ID"]), body)

        return await self._call(create)

    async def start(self, container_id: str) -> None:
        await self._call(lambda c: self._scale(c, container_id, 1))

    async def stop(self, container_id: str, timeout: float = 10) -> None:
        """Scale to zero: swarm stops the task (SIGTERM, then its grace period); kept."""
        await self._call(lambda c: self._scale(c, container_id, 0))

    async def revive(self, container_id: str, spec: ContainerSpec) -> Revival | None:
        def revive(client: docker.DockerClient) -> Revival | None:
            if not self._update(
                client, container_id, lambda s: swarm_specs.with_env(s, spec.env, 1)
            ):
                return None
            info = self.workload_of(client, container_id)
            return None if info is None else Revival(info, fresh_env=True)

        return await self._call(revive)

    async def inspect(self, container_id: str, *, size: bool = False) -> ContainerInfo | None:
        return await self._call(lambda c: self.workload_of(c, container_id))

    async def list_managed(self, instance: str) -> list[ContainerInfo]:
        labels = [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance}"]

        def list_(client: docker.DockerClient) -> list[ContainerInfo]:
            plain = self.managers.plain(client)
            if plain is not None:
                services = swarm_http.services_where(plain, {"label": labels})
                # The /tasks label filter matches the services' labels: one call for every task.
                every_task = swarm_http.tasks_where(plain, {"label": labels})
            else:
                services = api(client).services(filters={"label": labels})
                every_task = api(client).tasks(filters={"label": labels})
            by_service = swarm_specs.tasks_by_service(every_task)
            nodes = self.node_names(client, by_service)
            return [
                swarm_specs.workload(self.name, s, by_service.get(str(s["ID"]), []), nodes)
                for s in services
            ]

        found = await self._call(list_)
        return [w for w in found if w.belongs_to(instance)]  # never trust the filter alone

    async def remove(self, container_id: str) -> None:
        await self._call(lambda c: self.remove_service(c, container_id))

    async def remove_verified(
        self, container_id: str, check: Callable[[ContainerInfo | None], str | None]
    ) -> ContainerInfo | str:
        def verified(client: docker.DockerClient) -> ContainerInfo | str:
            info = self.workload_of(client, container_id)
            reason = check(info)
            if reason is not None or info is None:
                return reason or "already gone"
            self.remove_service(client, container_id)
            return info

        return await self._call(verified)

    async def remove_verified_group(
        self, ids: Sequence[str], check: GroupCheck
    ) -> list[GroupOutcome]:
        """One look at the group, ``check`` on all of it, then its removals in turn."""
        return await self._call(lambda c: swarm_removal.remove_group(self, c, ids, check))

    def open_events(self, instance: str) -> EventStream:
        """Service and node events of the swarm, and this manager's own container events."""
        filters = {"type": ["service", "node", "container"]}
        stream: EventStream = self.managers.call(lambda c: c.events(decode=True, filters=filters))
        return stream

    def open_logs(self, container_id: str, query: LogQuery) -> LogStream:
        """The service's logs (all its tasks', gathered by the manager), with timestamps."""

        def open_(client: docker.DockerClient) -> tuple[Any, bool]:
            try:
                service = api(client).inspect_service(container_id)
            except NotFound:
                raise WorkloadGone(self.name, container_id) from None
            template = (service.get("Spec") or {}).get("TaskTemplate") or {}
            tty = bool((template.get("ContainerSpec") or {}).get("TTY"))
            path = f"/services/{quote(container_id, safe='')}/logs"
            return open_engine_logs(api(client), path, query, tty), tty

        try:
            response, tty = self.managers.call(open_)
        except APIError as exc:
            raise LogsUnreadable(self.name, str(exc.explanation or exc)[:300]) from exc
        if response.status_code == 404:
            response.close()
            raise WorkloadGone(self.name, container_id)
        if response.status_code >= 400:
            reason = response.text[:300]
            response.close()
            raise LogsUnreadable(self.name, reason)
        return EngineLogStream(response, tty=tty)

    async def close(self) -> None:
        await self.managers.close()
        self._threads.shutdown(wait=False)

    # --- blocking helpers (in the engine's threads) -------------------------------------------
    def workload_of(self, client: docker.DockerClient, service_id: str) -> ContainerInfo | None:
        plain = self.managers.plain(client)
        if plain is not None:
            service = swarm_http.service(plain, service_id)
            if service is None:
                return None
            tasks = swarm_http.tasks(plain, str(service["ID"]))
        else:
            try:
                service = api(client).inspect_service(service_id)
            except NotFound:
                return None
            tasks = api(client).tasks(filters={"service": str(service["ID"])})
        nodes = self.node_names(client, {"": tasks})
        return swarm_specs.workload(self.name, service, tasks, nodes)

    def node_names(
        self, client: docker.DockerClient, tasks: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> dict[str, str]:
        """Node id -> name, asked again only when a task runs on a node not seen yet."""
        wanted = {str(t.get("NodeID")) for ts in tasks.values() for t in ts if t.get("NodeID")}
        if not wanted <= self._nodes.keys():
            self._nodes = swarm_specs.node_names(api(client).nodes())
        return self._nodes

    def remove_service(self, client: docker.DockerClient, service_id: str) -> None:
        plain = self.managers.plain(client)
        if plain is not None:
            swarm_http.remove(plain, service_id)  # gone already is fine
            return
        with contextlib.suppress(NotFound):
            api(client).remove_service(service_id)

    def _scale(self, client: docker.DockerClient, service_id: str, replicas: int) -> None:
        self._update(client, service_id, lambda s: swarm_specs.with_replicas(s, replicas))

    def _update(
        self,
        client: docker.DockerClient,
        service_id: str,
        change: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> bool:
        """Apply ``change`` to the service's spec at its current version; False if it is gone."""
        for _ in range(_UPDATE_ATTEMPTS):
            try:
                service = api(client).inspect_service(service_id)
            except NotFound:
                return False
            spec = change(service)
            try:
                api(client).update_service(
                    service_id,
                    version=int(service["Version"]["Index"]),
                    task_template=spec["TaskTemplate"],
                    name=spec["Name"],
                    labels=spec.get("Labels"),
                    mode=spec["Mode"],
                )
                return True
            except NotFound:
                return False
            except APIError as exc:
                if "out of sequence" in str(exc.explanation or exc):
                    continue  # updated by someone else meanwhile: read it again
                raise ContainerFailed(self.name, str(exc.explanation or exc)[:300]) from exc
        raise ContainerFailed(self.name, f"service {service_id} kept changing under the update")

    def _resolved(self, client: docker.DockerClient, image: str) -> str:
        """With BOT_IMAGE_PULL=always, the image pinned to its digest as the registry has it
        now, so every node runs the same; otherwise as given (nodes pull what they lack)."""
        if self.pull != PULL_ALWAYS or "@" in image:
            return image
        try:
            digest = api(client).inspect_distribution(image)["Descriptor"]["digest"]
        except APIError as exc:
            raise classify(image, self.name, str(exc.explanation or exc)) from exc
        return f"{image}@{digest}"
