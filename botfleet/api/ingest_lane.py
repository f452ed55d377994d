"""The fast lane of ``POST /bots/{bot_id}/results``: a stored post skips the framework.

Every bot posts its results every few seconds, so the accepted post is the hot path of every
fleet. This pure ASGI middleware sits inside the metrics and the body limit and answers a post
itself only when everything is plainly in order: a JSON body with a declared length, of the
documented shape (``{"data": …}`` or a list of 1 to 1000 of them, nothing else), every value
storable, a bearer token, an address not over its failure budget, and the token the live bot's
(``result_writer``: one statement that checks and inserts). Anything else — a refusal of any kind,
a malformed body, a chunked body — is handed to the documented FastAPI route with the body
replayed, having stored nothing, so every error, status and header stays that route's alone.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from botfleet.api.schemas.results import check_storable
from botfleet.auth import bearer_token
from botfleet.auth_failures import AuthFailureLimiter
from botfleet.constants import MAX_RESULTS_PER_POST
from botfleet.errors import TooManyAuthFailures
from botfleet.result_writer import ResultWriter

ROUTE_PATH = "/bots/{bot_id}/results"
_HEX = "[0-9a-fA-F]"
# The two spellings of a UUID the route's own parameter accepts; any other goes to the route.
_PATH = re.compile(
    rf"/bots/({_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}|{_HEX}{{32}})/results"
)


@dataclass(frozen=True)
class RouteLabel:
    """What ``HttpMetricsMiddleware`` reads from ``scope["route"]``: the route's template."""

    path: str


_LABEL = RouteLabel(ROUTE_PATH)


def storable_items(body: Any) -> list[Any] | None:
    """The ``data`` of each result in a body of the documented shape, or None when the full
    route must judge it (it then names the field at fault)."""
    if isinstance(body, dict):
        body = [body]
    elif not isinstance(body, list) or not 1 <= len(body) <= MAX_RESULTS_PER_POST:
        return None
    items = []
    for entry in body:
        if not isinstance(entry, dict) or len(entry) != 1 or "data" not in entry:
            return None
        try:
            check_storable(entry["data"])
        except ValueError:
            return None
        items.append(entry["data"])
    return items


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";", 1)[0].strip() == (
        "application/json"
    )


class ResultIngestLane:
    def __init__(
        self,
        app: ASGIApp,
        *,
        writer: ResultWriter,
        limiter: AuthFailureLimiter,
        clock: Callable[[], datetime],
    ) -> None:
        self.app = app
        self.writer = writer
        self.limiter = limiter
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        headers = Headers(scope=scope)
        if (
            match is None
            or scope.get("root_path")
            or headers.get("content-length") is None
            or not _is_json(headers.get("content-type"))
        ):
            await self.app(scope, receive, send)
            return
        try:
            body, complete = await _read_body(receive)
        except HTTPException as exc:  # the body limit's own refusal, as it answers it
            await JSONResponse({"detail": exc.detail}, status_code=exc.status_code)(
                scope, receive, send
            )
            return
        accepted = await self._store(scope, match.group(1), headers, body) if complete else 0
        if accepted:
            scope["route"] = _LABEL
            await _created(send, accepted)
            return
        await self.app(scope, _replay(body, complete, receive), send)

    async def _store(self, scope: Scope, bot: str, headers: Headers, body: bytes) -> int:
        """How many results were stored; 0: nothing was, the route answers."""
        token = bearer_token(headers.get("authorization"))
        if token is None:
            return 0
        client = scope.get("client")
        try:
            self.limiter.check(client[0] if client else "unknown")
        except TooManyAuthFailures:
            return 0
        try:
            items = storable_items(json.loads(body))
        except (ValueError, RecursionError):  # not JSON, or nested too deep for Python
            return 0
        if items is None:
            return 0
        try:
            stored = await self.writer.insert_if_authorised(
                uuid.UUID(bot), token, items, now=self.clock()
            )
        except RecursionError:  # encoding it again, before anything was sent
            return 0
        return len(items) if stored else 0


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and whether it arrived whole (False: the client went away)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body already read, then the client's own."""
    first: Message = (
        {"type": "http.request", "body": body, "more_body": False}
        if complete
        else {"type": "http.disconnect"}
    )
    pending = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def _created(send: Send, accepted: int) -> None:
    # The bytes FastAPI's JSONResponse would send for ResultsAccepted.
    content = b'{"accepted":%d}' % accepted
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [
                (b"content-length", str(len(content)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
