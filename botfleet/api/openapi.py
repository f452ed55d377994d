"""The OpenAPI document: what FastAPI derives from the routes, plus what it cannot derive.

Added here: ``Unstorable`` (what a result's data may not hold, at any depth), the optional
``MetricsToken`` scheme, and stable operation ids (the route's function name, so a generated
client has ``create_bot``, not ``create_bot_bots_post``).

``docs/openapi.json`` is a committed copy that the test suite compares with the served one;
regenerate it with ``make openapi`` (``botfleet openapi docs/openapi.json``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from botfleet.api.routes.metrics import METRICS_SCHEME
from botfleet.api.schemas import patterns
from botfleet.api.schemas.bots import BotCreate, BotCreated, BotOut
from botfleet.api.schemas.cleanup import CleanupReport
from botfleet.api.schemas.errors import Error
from botfleet.api.schemas.results import NUMBER_MAX, NUMBER_MIN, UNSTORABLE, ResultIn, ResultOut

_SELF = {"$ref": f"#/components/schemas/{UNSTORABLE}"}
UNSTORABLE_SCHEMA: dict[str, Any] = {
    "title": UNSTORABLE,
    "description": "JSON that the store cannot keep alike on SQLite and PostgreSQL, at any "
    "depth: text or a key with NUL (or a lone surrogate), a number beyond the signed 64-bit "
    "range. Result data is any JSON but this.",
    "anyOf": [
        {"type": "string", "pattern": "\\x00"},
        {"type": "number", "not": {"minimum": NUMBER_MIN, "maximum": NUMBER_MAX}},
        {"type": "array", "items": {}, "contains": _SELF},
        {"type": "object", "not": {"additionalProperties": {"not": _SELF}}},
        {"type": "object", "not": {"propertyNames": {"pattern": patterns.STORABLE_TEXT}}},
    ],
}


# Models whose examples the document shows; FastAPI's encoding of the document drops every null,
# in examples too, which would leave a live bot's example without its required deleted_at.
WITH_EXAMPLES: tuple[type[BaseModel], ...] = (
    BotCreate,
    BotOut,
    BotCreated,
    ResultIn,
    ResultOut,
    CleanupReport,
    Error,
)


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
    schemas = components.setdefault("schemas", {})
    schemas[UNSTORABLE] = UNSTORABLE_SCHEMA
    for model in WITH_EXAMPLES:
        extra = model.model_config.get("json_schema_extra")
        if isinstance(extra, dict) and model.__name__ in schemas:
            schemas[model.__name__]["examples"] = extra["examples"]
    components.setdefault("securitySchemes", {})[METRICS_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "METRICS_TOKEN, needed only when the server sets it",
    }
    return doc


def render(doc: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
