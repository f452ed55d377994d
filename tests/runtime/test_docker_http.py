"""The plain-HTTP route to an engine: keep-alive reuse, the retry on a connection the engine
closed while idle, error answers, and which engines get the route at all.

A tiny HTTP server on a unix socket stands in for the engine here (pure plumbing under test);
the real engine is driven through it in test_docker_engine.py.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botfleet.runtime.docker_http import EngineAnswer, EngineHttp


class FakeEngine:
    """Answers each request from ``answers`` (status, body); may hang up after each answer
    without saying so, as an engine does with an idle keep-alive connection."""

    def __init__(self, path: str | None, *, hang_up_after_answer: bool = False) -> None:
        """On the unix socket ``path``, or on a free loopback TCP port when it is None."""
        self.path = path
        self.hang_up = hang_up_after_answer
        self.answers: list[tuple[int, Any]] = []
        self.connections = 0
        self.requests: list[str] = []
        if path is None:
            self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._server.bind(("127.0.0.1", 0))
            self.port = int(self._server.getsockname()[1])
        else:
            self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._server.bind(path)
        self._server.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                while reader.readline() not in (b"\r\n", b""):
                    pass  # headers (requests here carry no body)
                self.requests.append(line.decode().split(" ")[0] + " " + line.decode().split()[1])
                status, body = self.answers.pop(0) if self.answers else (200, {})
                payload = json.dumps(body).encode()
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                if self.hang_up:
                    conn.shutdown(socket.SHUT_RDWR)
                    return

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def socket_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bf-http-") as tmp:
        yield tmp


def http_to(path: str | None) -> EngineHttp:
    assert path is not None
    return EngineHttp(version="1.41", timeout=5, socket_path=path)


def test_connections_are_kept_alive_and_reused(socket_dir: str) -> None:
    engine = FakeEngine(f"{socket_dir}/e.sock")
    http = http_to(engine.path)
    try:
        engine.answers = [(200, {"Id": "a"}), (200, {"Id": "b"}), (204, {})]
        assert http.get_json("/containers/a/json") == {"Id": "a"}
        assert http.get_json("/containers/b/json", {"size": "1"}) == {"Id": "b"}
        assert http.delete("/containers/b") == 204
        assert engine.connections == 1
        assert engine.requests == [
            "GET /v1.41/containers/a/json",
            "GET /v1.41/containers/b/json?size=1",
            "DELETE /v1.41/containers/b",
        ]
    finally:
        http.close()
        engine.close()


@pytest.mark.parametrize("over", ["unix", "tcp"])
def test_a_connection_the_engine_closed_while_idle_is_replaced(socket_dir: str, over: str) -> None:
    engine = FakeEngine(
        f"{socket_dir}/e.sock" if over == "unix" else None, hang_up_after_answer=True
    )
    if engine.path is None:
        http = EngineHttp(version="1.41", timeout=5, host="127.0.0.1", port=engine.port)
    else:
        http = http_to(engine.path)
    try:
        engine.answers = [(200, [1]), (200, [2]), (200, [3])]
        assert http.get_json("/containers/json") == [1]
        # The pooled connection is dead now; the request goes again on a new one.
        assert http.get_json("/containers/json") == [2]
        assert http.get_json("/containers/json") == [3]
        assert engine.connections == 3 and len(engine.requests) == 3
    finally:
        http.close()
        engine.close()


def test_errors_carry_the_engines_message_and_404_means_gone(socket_dir: str) -> None:
    engine = FakeEngine(f"{socket_dir}/e.sock")
    http = http_to(engine.path)
    try:
        engine.answers = [
            (404, {"message": "No such container: x"}),
            (404, {"message": "No such container: x"}),
            (409, {"message": "You cannot remove a running container"}),
            (500, {"message": "driver failed"}),
        ]
        assert http.get_json("/containers/x/json") is None
        assert http.delete("/containers/x") == 404
        with pytest.raises(EngineAnswer) as conflict:
            http.delete("/containers/y")
        assert conflict.value.status == 409 and "running container" in conflict.value.message
        with pytest.raises(EngineAnswer) as broken:
            http.get_json("/containers/z/json")
        assert broken.value.status == 500 and broken.value.message == "driver failed"
    finally:
        http.close()
        engine.close()


def test_no_engine_at_the_socket_is_a_connection_error(socket_dir: str) -> None:
    http = http_to(f"{socket_dir}/nobody.sock")
    with pytest.raises(OSError):
        http.get_json("/containers/json")
    assert not Path(f"{socket_dir}/nobody.sock").exists()


class _Adapter:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path


class _Api:
    def __init__(self, base_url: str, version: str = "1.41", socket_path: str = "") -> None:
        self.base_url = base_url
        self.api_version = version
        self.adapters = {"http+docker://": _Adapter(socket_path)} if socket_path else {}


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        (_Api("http+docker://localhost", socket_path="/run/docker.sock"), "/run/docker.sock"),
        (_Api("http://127.0.0.1:2375"), "127.0.0.1:2375"),
        (_Api("https://127.0.0.1:2376"), None),  # TLS: the SDK keeps it
        (_Api("http+docker://ssh"), None),  # no socket path: ssh and the like
        (_Api("http://127.0.0.1:2375", version=""), None),
    ],
)
def test_which_engines_get_the_plain_route(api: _Api, expected: str | None) -> None:
    http = EngineHttp.for_client(api, timeout=5)
    if expected is None:
        assert http is None
        return
    assert http is not None and http.prefix == "/v1.41"
    assert (http.socket_path or f"{http.host}:{http.port}") == expected
