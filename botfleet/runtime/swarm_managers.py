"""The swarm's managers (``DOCKER_HOSTS``): every call goes to the first that answers as one.

A manager that does not answer, or answers but is no longer a manager of an active swarm, is
passed over for the next; the one that answered stays current until it fails. Each manager's
client comes with its plain HTTP route (:class:`~botfleet.runtime.docker_http.EngineHttp`) for
the calls a cleanup makes once per service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException

from botfleet.errors import EngineUnavailable
from botfleet.runtime.docker_http import EngineHttp

T = TypeVar("T")
log = logging.getLogger(__name__)


class NotManager(Exception):
    """The engine answers, but is not (or no longer) a manager of an active swarm."""


class Managers:
    """The managers' clients, created on first use, and which of them answers now."""

    def __init__(self, urls: Sequence[str], *, engine: str, timeout: float) -> None:
        self.urls = list(urls) or [""]  # "": the local engine (DOCKER_HOST or the socket)
        self.engine = engine
        self.timeout = timeout
        self.current = 0
        self.clients: dict[str, docker.DockerClient] = {}
        self._plain: dict[int, EngineHttp | None] = {}  # by id(client): its plain HTTP route
        self._lock = threading.Lock()

    @property
    def current_url(self) -> str:
        return self.urls[self.current]

    def client(self, url: str) -> docker.DockerClient:
        with self._lock:
            client = self.clients.get(url)
            if client is None:
                timeout = int(self.timeout)
                client = (
                    docker.DockerClient(base_url=url, timeout=timeout)
                    if url
                    else docker.from_env(timeout=timeout)
                )
                if client.api.base_url.startswith("http+docker://"):
                    # A unix socket is never reached through a proxy: without this, requests
                    # reads the proxy variables again on every call (a third of a listing's
                    # client CPU, BENCHMARKS.md "Swarm"). TCP and TLS managers keep them.
                    client.api.trust_env = False
                self.clients[url] = client
                self._plain[id(client)] = EngineHttp.for_client(client.api, self.timeout)
            return client

    def plain(self, client: docker.DockerClient) -> EngineHttp | None:
        """The client's plain HTTP route (None where the transport has none)."""
        return self._plain.get(id(client))

    def call(self, fn: Callable[[docker.DockerClient], T]) -> T:
        """``fn`` on the current manager, or on the next one that answers as a manager."""
        reasons = []
        count = len(self.urls)
        for step in range(count):
            index = (self.current + step) % count
            url = self.urls[index]
            where = url or "local"
            try:
                result = fn(self.client(url))
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                reasons.append(f"{where}: {type(exc).__name__}")
                continue
            except APIError as exc:
                if exc.status_code == 503 and "manager" in str(exc.explanation or "").lower():
                    reasons.append(f"{where}: not a swarm manager")
                    continue
                raise
            except NotManager:
                reasons.append(f"{where}: not a swarm manager")
                continue
            except DockerException as exc:
                reasons.append(f"{where}: {str(exc)[:120]}")
                continue
            if index != self.current:
                log.warning("swarm: manager %s answers; moving to it", where)
                self.current = index
            return result
        raise EngineUnavailable(self.engine, "no manager answered (" + "; ".join(reasons) + ")")

    async def close(self) -> None:
        with self._lock:
            clients, self.clients = list(self.clients.values()), {}
            routes, self._plain = list(self._plain.values()), {}
        for route in routes:
            if route is not None:
                route.close()
        for client in clients:
            await asyncio.to_thread(client.close)


def manager_info(client: docker.DockerClient) -> None:
    """Raise :class:`NotManager` unless this engine is an active swarm manager."""
    swarm = (client.info() or {}).get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        raise NotManager()


def api(client: docker.DockerClient) -> Any:
    # docker-py's service and task calls carry no types (a version-check decorator drops them).
    return client.api
