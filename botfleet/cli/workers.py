"""``botfleet serve --workers N``: N uvicorn worker processes on one port.

The parent checks the settings, migrates once and names the lease file; uvicorn starts the
workers, each building its app with :func:`worker_app` from the same environment. Which worker
runs the background loops is ``background_lease``'s to decide.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from botfleet.background_lease import LEASE_ENV
from botfleet.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def worker_app() -> FastAPI:
    """The app of one worker: uvicorn calls this in each process it starts."""
    from botfleet.app import create_app
    from botfleet.logs import configure_logging, register_secret
    from botfleet.startup import checked_settings

    settings = checked_settings()  # the parent checked the same environment already
    configure_logging(settings.log_format, settings.log_level)
    if settings.admin_token is not None:
        register_secret(settings.admin_token.get_secret_value())
    return create_app(settings, migrate=False, background_lease=Path(os.environ[LEASE_ENV]))


def serve_workers(settings: Settings, workers: int, *, migrate: bool) -> None:
    import uvicorn

    from botfleet.store.migrate import upgrade_sync

    if migrate:
        upgrade_sync(settings)  # once, before any worker serves
    with tempfile.TemporaryDirectory(prefix="botfleet-serve-") as tmp:
        # The workers read the environment: the admin token (generated or not) and the lease.
        if settings.admin_token is not None:
            os.environ["ADMIN_TOKEN"] = settings.admin_token.get_secret_value()
        os.environ[LEASE_ENV] = str(Path(tmp) / "background.lock")
        uvicorn.run(
            "botfleet.cli.workers:worker_app",
            factory=True,
            workers=workers,
            host=settings.host,
            port=settings.port,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
