"""One router module per resource; ``include_all`` mounts them."""

from __future__ import annotations

from fastapi import FastAPI

from botfleet.api.routes import (
    bots,
    cleanup,
    dashboard,
    exports,
    fleet,
    health,
    logs,
    metrics,
    results,
)


def include_all(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(bots.router)
    app.include_router(results.router)
    app.include_router(logs.router)
    app.include_router(exports.router)
    app.include_router(fleet.router)
    app.include_router(cleanup.router)
    app.include_router(dashboard.router)
