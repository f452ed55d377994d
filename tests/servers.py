"""A real HTTP server in a thread, for tests that need one: bot containers posting results
over the host network, the CLI, anything that speaks HTTP rather than ASGI."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import uvicorn

from botfleet.app import create_app
from botfleet.config import Settings
from tests.support.wait import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(settings: Settings, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``create_app(settings)`` on ``settings.port``; yield its base URL.

    Build the settings with ``port=free_port()`` and ``main_server_url`` pointing at it, so
    that the bots this server starts can reach it.
    """
    config = uvicorn.Config(
        create_app(settings, migrate=False),
        host="127.0.0.1",
        port=settings.port,
        log_config=None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the test server's thread ended before it started")
        return bool(server.started)

    wait_until(started, timeout=timeout, message="the test server to start", interval=0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
