"""A webhook receiver on 127.0.0.1 for the notification tests: a real HTTP server (uvicorn, in
a thread of its own) that can be down, answer 500, answer slowly, or answer 200 — and records
every request with the status it answered."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tests.servers import free_port
from tests.support.wait import wait_until


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    mode: str = "ok"


@dataclass
class Receiver:
    """``mode``: ``ok`` (200), ``error`` (500) or ``slow`` (200 after ``delay`` seconds)."""

    port: int = field(default_factory=free_port)
    mode: str = "ok"
    delay: float = 5.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        mode = self.mode
        if mode == "slow":
            self.in_flight += 1
            await asyncio.sleep(self.delay)
            self.in_flight -= 1
        status = 500 if mode == "error" else 200
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(headers, body, status, mode))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})

    def start(self) -> Receiver:
        config = uvicorn.Config(
            self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        server = self._server
        wait_until(lambda: server.started, timeout=10, message="the receiver to listen")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None

    def mode_seen(self) -> bool:
        """A request is being answered slowly right now."""
        return self.in_flight > 0

    def delivered(self) -> list[Received]:
        """Requests answered 2xx."""
        return [r for r in self.received if 200 <= r.status < 300]
