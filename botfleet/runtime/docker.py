"""One Docker Engine, driven through the ``docker`` SDK with every blocking call in a thread.

The calls a cleanup makes per container (inspect, remove) and the listing go over plain HTTP
(:mod:`botfleet.runtime.docker_http`) when the engine is reachable that way. Connection problems
become :class:`EngineUnavailable`; a container that vanished is ``None`` or a no-op, never an error.
Removal is never forced and never touches volumes (safety rule 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.transport import UnixHTTPAdapter

from botfleet.constants import KIND_CONTAINERS, LABEL_INSTANCE, LABEL_MANAGED
from botfleet.errors import (
    ContainerConflict,
    ContainerFailed,
    EngineUnavailable,
    ImageNotAvailable,
    InvalidInput,
    LogsUnreadable,
    WorkloadGone,
)
from botfleet.runtime.base import ContainerInfo, ContainerSpec, EventStream, Revival
from botfleet.runtime.docker_http import CONNECTION_ERRORS, EngineAnswer, EngineHttp, container_path
from botfleet.runtime.images import PULL_NEVER, ensure_image
from botfleet.runtime.log_stream import EngineLogStream, LogQuery, LogStream, open_engine_logs

T = TypeVar("T")
LOCAL_ENGINE = "local"
_NEVER = "0001-01-01T00:00:00Z"
# A container summary's Status reads "Exited (137) 5 seconds ago"; inspect is not needed for it.
_EXITED_RE = re.compile(r"^Exited \((-?\d+)\)")


def parse_docker_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 timestamps carry nanoseconds; Python's parser takes microseconds."""
    if not value or value.startswith(_NEVER[:4]):
        return None
    text = value.rstrip("Z")
    offset = "+00:00"
    if "+" in text[10:] or "-" in text[10:]:
        cut = max(text.rfind("+"), text.rfind("-"))
        text, offset = text[:cut], text[cut:]
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text + offset).astimezone(UTC)


class DockerEngine:
    """A :class:`~botfleet.runtime.base.ContainerEngine` on one Docker daemon."""

    workload_kind = KIND_CONTAINERS
    lists_in_full = False  # a listing lacks FinishedAt and sizes: the stopped are inspected

    def __init__(
        self,
        url: str = "",
        *,
        timeout: float = 30.0,
        name: str | None = None,
        plain_http: bool = True,
        pull: str = PULL_NEVER,
    ) -> None:
        self.url = url
        self.name = name or url or LOCAL_ENGINE
        self.pull = pull
        self._timeout = timeout
        self._plain_http = plain_http
        self._client: docker.DockerClient | None = None
        self._http: EngineHttp | None = None
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None

    # --- plumbing ----------------------------------------------------------------------------
    def _connect(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                if self.url:
                    self._client = docker.DockerClient(
                        base_url=self.url, timeout=int(self._timeout)
                    )
                else:
                    self._client = docker.from_env(timeout=int(self._timeout))
                _one_pool_per_socket(self._client)
                if self._plain_http:
                    self._http = EngineHttp.for_client(self._client.api, self._timeout)
            return self._client

    async def _call(self, fn: Callable[[docker.DockerClient], T]) -> T:
        def run() -> T:
            try:
                return fn(self._connect())
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                raise EngineUnavailable(self.name, type(exc).__name__) from exc
            except DockerException as exc:
                if isinstance(exc, APIError):
                    raise
                raise EngineUnavailable(self.name, str(exc)[:200]) from exc

        with self._lock:
            if self._threads is None:
                # Threads of its own, as many as removals may be in flight (at most 64): the
                # loop's default pool has cores + 4, six on two cores, and would hold back the
                # engine's parallel removals and everyone else's blocking calls.
                self._threads = ThreadPoolExecutor(64, thread_name_prefix="docker-engine")
            threads = self._threads
        return await asyncio.get_running_loop().run_in_executor(threads, run)

    # --- the Protocol ------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._call(lambda c: c.ping())

    async def version(self) -> str:
        info = await self._call(lambda c: c.version())
        return str(info.get("Version", "unknown"))

    async def nodes(self) -> list[dict[str, Any]]:
        return []  # a plain engine is no cluster

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        if spec.placement:
            raise InvalidInput("placement", "swarm constraints need BOT_RUNTIME=swarm")
        if spec.resources is not None:
            raise InvalidInput("resources", "limits and reservations need BOT_RUNTIME=swarm")

        def create_and_start(client: docker.DockerClient) -> ContainerInfo:
            ensure_image(client, spec.image, self.pull, self.name)
            try:
                container = client.containers.create(
                    spec.image,
                    command=list(spec.command) if spec.command else None,
                    name=spec.name,
                    environment=dict(spec.env),
                    labels=dict(spec.labels),
                    network_mode=spec.network,
                    # docker-init as PID 1: a shell-script bot then stops on SIGTERM at once
                    # instead of waiting out the stop timeout, and zombies are reaped.
                    init=True,
                    detach=True,
                )
            except ImageNotFound as exc:
                raise ImageNotAvailable(spec.image, self.name) from exc
            except APIError as exc:
                raise ContainerFailed(self.name, _explain(exc)) from exc
            try:
                container.start()
            except Exception as exc:
                # Leave nothing behind: a bot row must never point at a half-made container.
                with contextlib.suppress(DockerException):
                    container.remove(force=True)
                if isinstance(exc, APIError):
                    raise ContainerFailed(self.name, _explain(exc)) from exc
                raise
            return _to_info(self.name, client.api.inspect_container(str(container.id)))

        return await self._call(create_and_start)

    async def revive(self, container_id: str, spec: ContainerSpec) -> Revival | None:
        """Start the stopped container again, as it was: its environment (and the token in it)
        and its image are the ones it was made with; ``spec`` does not apply."""

        def start_again(client: docker.DockerClient) -> Revival | None:
            if self._inspect(client, container_id, False) is None:
                return None
            try:
                client.api.start(container_id)
            except NotFound:
                return None
            except APIError as exc:
                raise ContainerFailed(self.name, _explain(exc)) from exc
            info = self._inspect(client, container_id, False)
            return None if info is None else Revival(info, fresh_env=False)

        return await self._call(start_again)

    async def start(self, container_id: str) -> None:
        def start(client: docker.DockerClient) -> None:
            try:
                client.api.start(container_id)
            except APIError as exc:
                raise ContainerFailed(self.name, _explain(exc)) from exc

        await self._call(start)

    async def stop(self, container_id: str, timeout: float = 10) -> None:
        def stop(client: docker.DockerClient) -> None:
            with contextlib.suppress(NotFound):
                client.api.stop(container_id, timeout=int(timeout))

        await self._call(stop)

    async def inspect(self, container_id: str, *, size: bool = False) -> ContainerInfo | None:
        return await self._call(lambda client: self._inspect(client, container_id, size))

    async def list_managed(self, instance: str) -> list[ContainerInfo]:
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance}"]}

        def list_(client: docker.DockerClient) -> list[ContainerInfo]:
            http = self._http
            if http is not None:
                query = {"all": "1", "filters": json.dumps(filters)}
                rows = self._plainly(lambda: http.get_json("/containers/json", query)) or []
            else:
                rows = client.api.containers(all=True, filters=filters)
            return [_summary_to_info(self.name, row) for row in rows]

        found = await self._call(list_)
        # Never trust the server-side filter alone (safety rule 2).
        return [c for c in found if c.belongs_to(instance)]

    async def remove(self, container_id: str) -> None:
        await self._call(lambda client: self._remove(client, container_id))

    async def remove_verified(
        self, container_id: str, check: Callable[[ContainerInfo | None], str | None]
    ) -> ContainerInfo | str:
        """Inspect, ask ``check`` (None: go ahead; a str: the reason not to), remove: in one
        thread, with no wait between the last look at the container and its removal. Returns
        what was removed, or the reason it was not (``ContainerConflict`` if the engine refused).
        """

        def verified(client: docker.DockerClient) -> ContainerInfo | str:
            info = self._inspect(client, container_id, False)
            reason = check(info)
            if reason is not None or info is None:
                return reason or "already gone"
            self._remove(client, container_id)
            return info

        return await self._call(verified)

    # --- the calls, blocking (run in the engine's threads) ----------------------------------
    def _inspect(
        self, client: docker.DockerClient, container_id: str, size: bool
    ) -> ContainerInfo | None:
        http = self._http
        if http is not None:
            params = {"size": "1"} if size else None
            path = container_path(container_id, "/json")
            found = self._plainly(lambda: http.get_json(path, params))
            return None if found is None else _to_info(self.name, found)
        try:
            if size:
                # The SDK's inspect has no size flag; SizeRw feeds "bytes reclaimed".
                api: Any = client.api
                url = api._url("/containers/{0}/json", container_id)
                raw = api._result(api._get(url, params={"size": 1}), True)
            else:
                raw = client.api.inspect_container(container_id)
        except NotFound:
            return None
        return _to_info(self.name, raw)

    def _remove(self, client: docker.DockerClient, container_id: str) -> None:
        """Never forced, never with volumes; gone already is fine; running is a conflict."""
        http = self._http
        if http is not None:
            try:
                self._plainly(lambda: http.delete(container_path(container_id)))
            except EngineAnswer as exc:
                if exc.status == 409:
                    raise ContainerConflict(exc.message) from exc
                raise
            return
        try:
            client.api.remove_container(container_id, v=False, force=False)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code == 409:
                raise ContainerConflict(str(exc.explanation or exc)) from exc
            raise

    def open_events(self, instance: str) -> EventStream:
        """This instance's container events (blocking; run it in a thread)."""
        filters = {"type": "container", "label": [f"{LABEL_INSTANCE}={instance}"]}
        try:
            stream: EventStream = self._connect().events(decode=True, filters=filters)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise EngineUnavailable(self.name, type(exc).__name__) from exc
        except DockerException as exc:
            raise EngineUnavailable(self.name, str(exc)[:200]) from exc
        return stream

    def open_logs(self, container_id: str, query: LogQuery) -> LogStream:
        """The container's stdout and stderr with timestamps (blocking; read it in a thread)."""
        try:
            api = self._connect().api
            try:
                config = api.inspect_container(container_id).get("Config") or {}
            except NotFound:
                raise WorkloadGone(self.name, container_id) from None
            path = container_path(container_id, "/logs")
            response = open_engine_logs(api, path, query, bool(config.get("Tty")))
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise EngineUnavailable(self.name, type(exc).__name__) from exc
        except APIError as exc:
            raise LogsUnreadable(self.name, _explain(exc)) from exc
        except DockerException as exc:
            raise EngineUnavailable(self.name, str(exc)[:200]) from exc
        if response.status_code >= 400:
            reason = response.text[:300]
            response.close()
            if response.status_code == 404:
                raise WorkloadGone(self.name, container_id)
            raise LogsUnreadable(self.name, reason)
        return EngineLogStream(response, tty=bool(config.get("Tty")))

    def _plainly(self, call: Callable[[], T]) -> T:
        """A plain-HTTP call; a broken connection means the engine is unavailable."""
        try:
            return call()
        except CONNECTION_ERRORS as exc:
            raise EngineUnavailable(self.name, f"{type(exc).__name__}: {exc}"[:200]) from exc

    async def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            http, self._http = self._http, None
            threads, self._threads = self._threads, None
        if http is not None:
            http.close()
        if client is not None:
            await asyncio.to_thread(client.close)
        if threads is not None:
            threads.shutdown(wait=False)


class _OnePoolAdapter(UnixHTTPAdapter):
    """docker-py keys its unix-socket connection pools by the whole URL, so every container id
    in a path (``/containers/<id>/json``) gets a pool, and a new socket, of its own. One pool per
    socket instead: connections are reused across containers, with no connect/close per
    container (BENCHMARKS.md, "Figures behind the code")."""

    def get_connection(self, url: str | bytes, proxies: Any = None) -> Any:
        return super().get_connection("http+docker://localhost", proxies)


def _one_pool_per_socket(client: docker.DockerClient) -> None:
    adapter = client.api.adapters.get("http+docker://")
    if isinstance(adapter, UnixHTTPAdapter) and not isinstance(adapter, _OnePoolAdapter):
        client.api.mount(
            "http+docker://",
            _OnePoolAdapter(
                "http+unix://" + adapter.socket_path,
                adapter.timeout,
                max_pool_size=adapter.max_pool_size,
            ),
        )
        adapter.close()


def _to_info(engine: str, raw: dict[str, Any]) -> ContainerInfo:
    state = raw.get("State") or {}
    config = raw.get("Config") or {}
    return ContainerInfo(
        id=raw["Id"],
        name=str(raw.get("Name", "")).lstrip("/"),
        engine=engine,
        state=str(state.get("Status", "unknown")),
        labels=dict(config.get("Labels") or {}),
        created_at=parse_docker_time(raw.get("Created")),
        started_at=parse_docker_time(state.get("StartedAt")),
        finished_at=parse_docker_time(state.get("FinishedAt")),
        exit_code=state.get("ExitCode"),
        size_bytes=raw.get("SizeRw"),
    )


def _summary_to_info(engine: str, row: dict[str, Any]) -> ContainerInfo:
    names = row.get("Names") or [""]
    created = row.get("Created")
    exited = _EXITED_RE.match(str(row.get("Status", "")))
    return ContainerInfo(
        id=row["Id"],
        name=str(names[0]).lstrip("/"),
        engine=engine,
        state=str(row.get("State", "unknown")),
        labels=dict(row.get("Labels") or {}),
        created_at=datetime.fromtimestamp(created, UTC) if created else None,
        exit_code=int(exited[1]) if exited else None,
    )


def _explain(exc: APIError) -> str:
    return str(exc.explanation or exc)[:300]
