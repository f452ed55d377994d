"""The app factory: ``create_app(settings)`` wires store, engines, metrics and background work.

Nothing heavy happens at import time, so a test can build one app on SQLite and another on
PostgreSQL in the same run. The lifespan starts what the factory built and stops it in reverse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from botfleet import __version__
from botfleet.config import Settings
from botfleet.runtime.fleet import Fleet
from botfleet.store.migrate import upgrade
from botfleet.store.session import SessionFactory, create_engine, create_session_factory

log = logging.getLogger(__name__)


class Component(Protocol):
    """Background work owned by the app (reconciler, scheduler): started and stopped with it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Services:
    """Everything a request handler may need, built once per app and passed in, never global."""

    settings: Settings
    db: AsyncEngine
    sessions: SessionFactory
    registry: CollectorRegistry
    fleet: Fleet
    # Filled by the factory: the cleanup service, its scheduler, metrics (typed in their modules).
    cleanup: Any = None
    scheduler: Any = None
    metrics: Any = None
    components: list[Component] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def build_services(settings: Settings) -> Services:
    db = create_engine(settings)
    return Services(
        settings=settings,
        db=db,
        sessions=create_session_factory(db),
        registry=CollectorRegistry(auto_describe=True),
        fleet=Fleet.from_settings(settings),
    )


def create_app(settings: Settings, *, migrate: bool = True) -> FastAPI:
    """Build the ASGI app. ``migrate`` brings the schema up to date on start (under a lock)."""
    if settings.admin_token is None:
        raise ValueError(
            "create_app needs settings with an admin token (Settings.with_admin_token)"
        )
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade(settings)
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
    )
    app.state.services = services

    from botfleet.api import errors, routes

    errors.install(app)
    routes.include_all(app)
    return app
