"""What each operation declares beyond its success: the error statuses it really answers, each
with the one error body (``schemas/errors.py``) and the headers sent with it.

Routes call :func:`errors` with their statuses, so a generated client, a gateway or a fuzzer
knows every answer; ``tests/api/test_openapi.py`` checks that every operation does.
"""

from __future__ import annotations

from typing import Any

from botfleet.api.schemas.errors import Error
from botfleet.constants import MAX_BODY_BYTES

WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Bearer`: the scheme the token goes in.",
        "schema": {"type": "string", "enum": ["Bearer"]},
    }
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until this address may try again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}

DESCRIPTIONS = {
    400: "The body could not be read as text (not UTF-8).",
    401: "Missing or wrong bearer token.",
    403: "A valid token that may not do this (another bot's token, or the admin token).",
    404: "No such resource (a purged bot, an unknown run or plan, a bot's removed container).",
    409: "Conflicts with the current state (a live bot holds the name, past retention, a "
    "cleanup already running).",
    410: "The bot is soft-deleted: readable and restorable, but it accepts no results.",
    413: f"The request body is larger than {MAX_BODY_BYTES} bytes.",
    422: "A value is refused: `detail` says why in one line, `errors` names each field.",
    429: "Too many failed authentications from this address lately; retry after "
    "`Retry-After` seconds.",
    502: "The container engine refused the operation (running the container, reading its logs).",
    503: "A dependency does not answer (no container engine or swarm manager reachable, the "
    "image's registry silent, the cleanup lock lost).",
}
HEADERS = {401: WWW_AUTHENTICATE, 429: RETRY_AFTER}

# Every operation behind a bearer token can answer these two.
AUTH = (401, 429)
# Every operation that reads a JSON body can answer these.
BODY = (400, 413, 422)


def errors(*statuses: int, **models: type[Error]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the error body; ``models`` overrides the
    body of one status by name (``s409=CleanupBusy``)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        answer: dict[str, Any] = {
            "model": models.get(f"s{status}", Error),
            "description": DESCRIPTIONS[status],
        }
        if status in HEADERS:
            answer["headers"] = HEADERS[status]
        out[status] = answer
    return out
