"""One router module per resource; ``include_all`` mounts them."""

from __future__ import annotations

from fastapi import FastAPI


def include_all(app: FastAPI) -> None:
    from botfleet.api.routes import health

    app.include_router(health.router)
