"""A real HTTP server in a thread, for tests that need one: bot containers posting results
over the host network, the CLI, anything that speaks HTTP rather than ASGI."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from botfleet.app import create_app
from botfleet.config import Settings


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
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
