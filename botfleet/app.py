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
    from botfleet.api.ratelimit import AuthFailureLimiter

    db = create_engine(settings)
    limiter = AuthFailureLimiter(
        limit=settings.auth_failure_limit, window=settings.auth_failure_window_seconds
    )
    # Bot-token failures have a budget of their own: a wrong admin token in a script on a bot
    # host must not stop that host's bots from posting results (they share its address).
    bot_limiter = AuthFailureLimiter(
        limit=settings.auth_failure_limit, window=settings.auth_failure_window_seconds
    )
    return Services(
        settings=settings,
        db=db,
        sessions=create_session_factory(db),
        registry=CollectorRegistry(auto_describe=True),
        fleet=Fleet.from_settings(settings),
        extras={"auth_limiter": limiter, "bot_auth_limiter": bot_limiter},
    )


def create_app(settings: Settings, *, migrate: bool = True) -> FastAPI:
    """Build the ASGI app. ``migrate`` brings the schema up to date on start (under a lock)."""
    if settings.admin_token is None:
        raise ValueError(
            "create_app needs settings with an admin token (Settings.with_admin_token)"
        )
    services = build_services(settings)
    from botfleet import metrics

    # Before the cleanup service is built: it takes services.metrics.observe as an observer.
    metrics.install(services)
    from botfleet.cleanup.service import CleanupService
    from botfleet.cleanup.timing import BatchGovernor

    # Built here, so a bad CLEANUP_POLICY_FILE stops the app before it serves anything.
    services.cleanup = CleanupService(
        settings=settings,
        sessions=services.sessions,
        fleet=services.fleet,
        observers=[services.metrics.observe],
        governor=BatchGovernor.from_settings(settings),
    )
    from botfleet.logs import register_settings_secrets, track_cleanup_runs

    # Logs carry the run id of every cleanup action and never a configured secret.
    track_cleanup_runs(services.cleanup)
    register_settings_secrets(settings)
    from botfleet.reconcile import Reconciler

    services.components.append(
        Reconciler(sessions=services.sessions, fleet=services.fleet, settings=settings)
    )
    from botfleet.cleanup.scheduler import Scheduler

    # Always built (its status explains "off"); started only with CLEANUP_ENABLED, and last,
    # so that it stops first: a run in progress ends after its batch before the rest goes.
    services.scheduler = Scheduler(
        settings=settings, service=services.cleanup, engines=services.fleet.names
    )
    if settings.cleanup_enabled:
        services.components.append(services.scheduler)

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
    )
    app.state.services = services

    from botfleet.api import errors, routes
    from botfleet.api.limits import BodySizeLimit
    from botfleet.api.middleware import HttpMetricsMiddleware
    from botfleet.constants import MAX_BODY_BYTES

    errors.install(app)
    routes.include_all(app)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(HttpMetricsMiddleware, metrics=services.metrics.http)
    return app
