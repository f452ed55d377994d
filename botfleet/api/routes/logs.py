"""A bot's container logs (admin token): the last lines as JSON, or followed as server-sent
events.

Why server-sent events for ``follow=true`` rather than chunked NDJSON: the framing says more
than lines do — ``event: line`` for a log line, ``event: end`` when the container stopped (a
client tells a finished stream from a cut connection), and a ``:`` comment every few seconds of
silence, which keeps proxies from closing a quiet stream and lets the server notice a reader
that left (the engine's stream is closed with it). It is a standard any HTTP client can read
(``curl -N``, ``fetch`` streams, SSE libraries); ``EventSource`` itself cannot send the bearer
token, so the dashboard shows a tail instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from botfleet.api.deps import AdminDep, ServicesDep
from botfleet.api.params import parse_time, time_query
from botfleet.api.responses import AUTH, errors
from botfleet.api.schemas.logs import LogLineOut, LogList
from botfleet.bot_logs import MAX_TAIL, BotLogs, follow
from botfleet.runtime.log_stream import LogQuery, LogStream

router = APIRouter(prefix="/bots/{bot_id}/logs", tags=["bots"])
# Seconds of silence after which a follow sends a comment line.
HEARTBEAT_SECONDS = 10.0
EVENT_STREAM = "text/event-stream"
# One event of the stream, as SSE readers (and Schemathesis) see it: a log line's JSON in
# ``data`` (LogLineOut) under ``event: line``, or the end under ``event: end``.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["line", "end"]},
        "data": {"type": "string", "description": 'JSON: a LogLineOut, or `{"reason"}`.'},
    },
    "required": ["data"],
}


async def bot_logs(services: ServicesDep) -> BotLogs:
    return BotLogs(sessions=services.sessions, fleet=services.fleet)


BotLogsDep = Annotated[BotLogs, Depends(bot_logs)]


@router.get(
    "",
    response_model=LogList,
    responses={
        **errors(*AUTH, 404, 422, 502, 503),
        200: {
            "description": "The last lines; with `follow=true`, server-sent events instead: "
            "`event: line` with a log line as JSON in `data`, a `:` comment line every "
            f"{HEARTBEAT_SECONDS:g} s of silence, and `event: end` when the container stops.",
            "content": {EVENT_STREAM: {"schema": SSE_EVENT}},
        },
    },
)
async def get_logs(
    bot_id: uuid.UUID,
    logs: BotLogsDep,
    _admin: AdminDep,
    tail: int = Query(
        100,
        ge=0,
        le=MAX_TAIL,
        description=f"The last N lines (0 to {MAX_TAIL}; more is refused, not capped).",
    ),
    since: str | None = time_query("Only lines from this moment on (RFC 3339; no zone: UTC)."),
    follow_: bool = Query(
        False, alias="follow", description="Keep the answer open and stream new lines (SSE)."
    ),
) -> LogList | StreamingResponse:
    """The container's stdout and stderr, a line each with the engine's timestamp. 404 when
    the container is gone (removed by the cleanup or by hand), 503 when its engine is
    unreachable."""
    query = LogQuery(tail=tail, since=parse_time("since", since), follow=follow_)
    if not follow_:
        lines = await logs.tail(bot_id, query)
        return LogList(items=[LogLineOut.of(line) for line in lines], total=len(lines))
    # Opened before the answer starts: a gone container or a silent engine is still a 404/503.
    stream = await logs.open(bot_id, query)
    return StreamingResponse(
        _events(stream),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(stream: LogStream) -> AsyncIterator[str]:
    async for line in follow(stream, HEARTBEAT_SECONDS):
        if line is None:
            yield ": keep-alive\n\n"
        else:
            yield f"event: line\ndata: {LogLineOut.of(line).model_dump_json()}\n\n"
    yield 'event: end\ndata: {"reason": "the container stopped"}\n\n'
