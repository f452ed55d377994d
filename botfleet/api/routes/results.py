"""Results: posted by a bot with its own token, read by operators with the admin token."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Security
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from botfleet.api.deps import UNAUTHORIZED_HEADERS, AdminDep, ServicesDep, client_ip
from botfleet.api.params import PageDep, parse_time, time_query
from botfleet.api.responses import AUTH, BODY, errors
from botfleet.api.routes.exports import EXPORT_CONTENT, streamed
from botfleet.api.schemas.results import (
    ResultIn,
    ResultList,
    ResultOut,
    ResultsAccepted,
    ResultsBody,
)
from botfleet.auth import bearer_token
from botfleet.errors import BotTokenInvalid
from botfleet.results import ResultService
from botfleet.results_export import ExportFilter, check_bot
from botfleet.store.models import utcnow

router = APIRouter(prefix="/bots/{bot_id}/results", tags=["results"])


async def result_service(services: ServicesDep) -> ResultService:
    admin = services.settings.admin_token
    return ResultService(
        db=services.db,
        sessions=services.sessions,
        admin_token=admin.get_secret_value() if admin else "",
    )


ResultsDep = Annotated[ResultService, Depends(result_service)]
# Documents the bot's own token in the OpenAPI document; the check is post_results' own.
BOT_SCHEME = HTTPBearer(auto_error=False, scheme_name="BotToken", description="the bot's BOT_TOKEN")
BotScheme = Annotated[HTTPAuthorizationCredentials | None, Security(BOT_SCHEME)]


@router.post(
    "",
    status_code=201,
    response_model=ResultsAccepted,
    responses=errors(*AUTH, *BODY, 403, 404, 410),
)
async def post_results(
    bot_id: uuid.UUID,
    request: Request,
    results: ResultsDep,
    services: ServicesDep,
    body: Annotated[ResultsBody, Body()],
    _scheme: BotScheme = None,
) -> ResultsAccepted:
    """``{"data": …}`` or a list of up to 1000 of them, with the bot's own token."""
    # Unknown tokens count against the address like wrong admin tokens do (429 + Retry-After).
    limiter = services.bot_auth_limiter
    ip = client_ip(request)
    limiter.check(ip)
    token = bearer_token(request.headers.get("authorization"))
    items = [body.data] if isinstance(body, ResultIn) else [item.data for item in body]
    try:
        if token is None:
            raise HTTPException(401, "missing bearer token", headers=UNAUTHORIZED_HEADERS)
        accepted = await results.ingest(bot_id, token, items, now=utcnow())
    except (HTTPException, BotTokenInvalid) as exc:
        if getattr(exc, "status_code", 401) == 401:
            limiter.failed(ip, request.url.path)
        raise
    return ResultsAccepted(accepted=accepted)


@router.get(
    "",
    response_model=ResultList,
    responses={
        **errors(*AUTH, 404, 422),
        200: {
            "description": "A page of results (JSON); with `format=ndjson` or `csv`, all of "
            "them, oldest first, streamed.",
            "content": EXPORT_CONTENT,
        },
    },
)
async def list_results(
    bot_id: uuid.UUID,
    results: ResultsDep,
    services: ServicesDep,
    _admin: AdminDep,
    page: PageDep,
    fmt: Literal["json", "ndjson", "csv"] = Query(
        "json",
        alias="format",
        description="`json`: a page, newest first; `ndjson` or `csv`: every result (within "
        "`since`/`until`), oldest first, streamed.",
    ),
    since: str | None = time_query("ndjson/csv: created at or after (RFC 3339)."),
    until: str | None = time_query("ndjson/csv: created before (RFC 3339)."),
) -> ResultList | StreamingResponse:
    """Newest first, with ``total``; or the whole export of the bot's results."""
    if fmt != "json":
        flt = ExportFilter(
            bot_id=bot_id, since=parse_time("since", since), until=parse_time("until", until)
        )
        await check_bot(services.db, bot_id)
        return streamed(services, flt, fmt, f"results-{bot_id}")
    found = await results.list(bot_id, page)
    return ResultList(
        items=[ResultOut.model_validate(r) for r in found.items],
        total=found.total,
        next_cursor=found.next_cursor,
    )
