"""The app factory: ``create_app(settings)`` builds the services and hands them to a lifespan that
starts and stops them.

Nothing heavy happens at import time, so a test can build one app on SQLite and another on
PostgreSQL in the same run. The lifespan starts what the factory built and stops it in reverse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from botfleet import __version__
from botfleet.api import errors, openapi, routes
from botfleet.api.ingest_lane import ResultIngestLane
from botfleet.api.limits import BodySizeLimit
from botfleet.api.middleware import HttpMetricsMiddleware
from botfleet.config import Settings
from botfleet.constants import MAX_BODY_BYTES
from botfleet.services import Component, build_services
from botfleet.store.migrate import upgrade
from botfleet.store.models import utcnow

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, migrate: bool = True, background_lease: Path | None = None
) -> FastAPI:
    """Build the ASGI app. ``migrate`` brings the schema up to date on start (under a lock);
    ``background_lease``: one of several workers (``background_lease.py``)."""
    if settings.admin_token is None:
        raise ValueError(
            "create_app needs settings with an admin token (Settings.with_admin_token)"
        )
    services = build_services(settings, background_lease=background_lease)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade(settings)
        try:
            await services.cleanup.mark_abandoned()
        except Exception as exc:  # not fatal: the next run's own check catches stale rows
            log.warning("marking abandoned cleanup runs failed: %s", exc)
        started: list[Component] = []
        try:
            for component in services.components:
                await component.start()
                started.append(component)
            yield
        finally:
            for component in reversed(started):
                try:
                    await component.stop()
                except Exception:
                    log.exception("stopping %s failed", type(component).__name__)
            await services.fleet.close()
            await services.db.dispose()

    app = FastAPI(
        title="botfleet",
        version=__version__,
        description="Run fleets of containerised bots and keep them clean.",
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.services = services
    errors.install(app)
    routes.include_all(app)
    openapi.install(app)
    if services.result_writer is not None:
        app.add_middleware(
            ResultIngestLane,
            writer=services.result_writer,
            limiter=services.bot_auth_limiter,
            clock=utcnow,
        )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(HttpMetricsMiddleware, metrics=services.metrics.http)
    return app
