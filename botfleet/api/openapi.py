"""The OpenAPI document: what FastAPI derives from the routes, plus what it cannot derive.

Added here: ``StorableJson`` (a result's data, recursive) and stable operation ids (the route's
function name, so a generated client has ``create_bot``, not ``create_bot_bots_post``).

``docs/openapi.json`` is a committed copy that the test suite compares with the served one;
regenerate it with ``make openapi`` (``botfleet openapi docs/openapi.json``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from botfleet.api.routes.metrics import METRICS_SCHEME
from botfleet.api.schemas import patterns
from botfleet.api.schemas.results import NUMBER_MAX, NUMBER_MIN, STORABLE_JSON

_SELF = {"$ref": f"#/components/schemas/{STORABLE_JSON}"}
STORABLE_JSON_SCHEMA: dict[str, Any] = {
    "title": STORABLE_JSON,
    "description": "Any JSON value the store keeps alike on SQLite and PostgreSQL: text "
    "without NUL or lone surrogates, numbers within the signed 64-bit range.",
    "anyOf": [
        {"type": "string", "pattern": patterns.STORABLE_TEXT},
        {"type": "number", "minimum": NUMBER_MIN, "maximum": NUMBER_MAX},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": _SELF},
        {
            "type": "object",
            "propertyNames": {"type": "string", "pattern": patterns.STORABLE_TEXT},
            "additionalProperties": _SELF,
        },
    ],
}


def operation_id(route: APIRoute) -> str:
    return route.name


def install(app: FastAPI) -> None:
    """Serve the document with what :func:`document` adds, built once per app."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        openapi_version=app.openapi_version,
    )
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})[STORABLE_JSON] = STORABLE_JSON_SCHEMA
    components.setdefault("securitySchemes", {})[METRICS_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "METRICS_TOKEN, needed only when the server sets it",
    }
    return doc


def render(doc: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
