"""Plain HTTP/1.1 to one Docker Engine with the standard library, for the calls a cleanup makes
once per container (inspect, remove) and the listing before them.

Why not the docker SDK for these: an inspect through docker-py (requests, urllib3) costs about
five times the client CPU of one through ``http.client`` (httpx's async client more still:
BENCHMARKS.md, "Figures behind the code"), and on two cores every client millisecond is taken
from the engine doing the removals. The SDK still does everything else (create, start,
stop, events) and every call on an engine this module cannot reach plainly (TLS, ssh).
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

# Failures of the connection itself (as opposed to an answer from the engine).
CONNECTION_ERRORS = (OSError, http.client.HTTPException)


class EngineAnswer(Exception):
    """The engine answered with an error status; ``message`` is its own explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class EngineHttp:
    """Keep-alive connections to one engine (a LIFO pool, safe across threads). Its size is the
    most calls in flight at once (``CLEANUP_CONTAINER_CONCURRENCY`` is at most 64), so that
    none is closed and reopened between two calls."""

    def __init__(
        self,
        *,
        version: str,
        timeout: float,
        socket_path: str | None = None,
        host: str | None = None,
        port: int | None = None,
        pool_size: int = 64,
    ) -> None:
        if (socket_path is None) == (host is None):
            raise ValueError("a EngineHttp needs exactly one of socket_path and host")
        self.prefix = f"/v{version}"
        self.timeout = timeout
        self.socket_path = socket_path
        self.host, self.port = host, port
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(pool_size)

    @classmethod
    def for_client(cls, api: Any, timeout: float) -> EngineHttp | None:
        """The plain route to the engine a docker-py ``APIClient`` talks to, if there is one:
        a unix socket or unencrypted TCP. None for TLS and ssh (the SDK keeps those)."""
        version = str(getattr(api, "api_version", "") or "")
        base = str(getattr(api, "base_url", "") or "")
        if not version:
            return None
        if base.startswith("http+docker://"):
            adapter = api.adapters.get("http+docker://")
            path = getattr(adapter, "socket_path", None)
            if isinstance(path, str) and path:
                return cls(version=version, timeout=timeout, socket_path=path)
            return None
        if base.startswith("http://"):
            parts = urlsplit(base)
            if parts.hostname:
                return cls(version=version, timeout=timeout, host=parts.hostname, port=parts.port)
        return None

    # --- requests -----------------------------------------------------------------------------
    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any | None:
        """The decoded answer; None when the engine says 404 (no such container)."""
        status, body = self.request("GET", path, params)
        if status == 404:
            return None
        if status >= 400:
            raise EngineAnswer(status, answer_message(body))
        return json.loads(body)

    def delete(self, path: str, params: dict[str, Any] | None = None) -> int:
        """The status of a removal (2xx or 404); any other error status raises."""
        status, body = self.request("DELETE", path, params)
        if status >= 400 and status != 404:
            raise EngineAnswer(status, answer_message(body))
        return status

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        target = self.prefix + path + (f"?{urlencode(params)}" if params else "")
        conn, reused = self._take()
        try:
            status, body = self._exchange(conn, method, target)
        except CONNECTION_ERRORS:
            conn.close()
            if not reused:
                raise
            # The engine closed an idle keep-alive connection: say it again on a new one. A
            # repeated GET is harmless; a repeated DELETE answers 404, which means gone.
            conn = self._new()
            try:
                status, body = self._exchange(conn, method, target)
            except CONNECTION_ERRORS:
                conn.close()
                raise
        self._give_back(conn)
        return status, body

    @staticmethod
    def _exchange(conn: http.client.HTTPConnection, method: str, target: str) -> tuple[int, bytes]:
        conn.request(method, target, headers={"Host": "docker"})
        response = conn.getresponse()
        body = response.read()
        if response.will_close:
            conn.close()
        return response.status, body

    # --- the pool -----------------------------------------------------------------------------
    def _new(self) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixConnection(self.socket_path, self.timeout)
        return http.client.HTTPConnection(str(self.host), self.port, timeout=self.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            return self._new(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            return
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def container_path(container_id: str, suffix: str = "") -> str:
    return f"/containers/{quote(container_id, safe='')}{suffix}"


def answer_message(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:300]
    if isinstance(decoded, dict) and "message" in decoded:
        return str(decoded["message"])[:300]
    return str(decoded)[:300]
