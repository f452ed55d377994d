"""``GET /metrics``: the app's registry in Prometheus text format.

Open by default, as Prometheus expects; with ``METRICS_TOKEN`` set it needs that bearer token
(deliberately not the admin token: a scraper should hold no power over the fleet).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from botfleet.api.deps import UNAUTHORIZED_HEADERS, ServicesDep
from botfleet.api.responses import WWW_AUTHENTICATE, errors
from botfleet.auth import bearer_token, tokens_equal

router = APIRouter(tags=["metrics"])
METRICS_SCHEME = "MetricsToken"


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        401: {
            **errors(401)[401],
            "description": "Only with METRICS_TOKEN set: a missing or wrong token.",
            "headers": WWW_AUTHENTICATE,
        },
    },
    # Optional security: no token unless the server sets METRICS_TOKEN.
    openapi_extra={"security": [{}, {METRICS_SCHEME: []}]},
)
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Every botfleet metric; with METRICS_TOKEN set, only for that bearer token."""
    expected = services.settings.metrics_token
    if expected is not None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None or not tokens_equal(token, expected.get_secret_value()):
            raise HTTPException(
                401, "missing or invalid bearer token (METRICS_TOKEN)", headers=UNAUTHORIZED_HEADERS
            )
    # Collectors read in-memory state only (see botfleet.metrics), so this never waits on I/O.
    return Response(generate_latest(services.registry), media_type=CONTENT_TYPE_LATEST)
