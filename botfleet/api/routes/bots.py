"""Bot management: create, list, show, soft delete, restore (admin token)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from botfleet.api.deps import AdminDep, ServicesDep
from botfleet.api.params import PageDep, label_query
from botfleet.api.responses import AUTH, BODY, errors
from botfleet.api.schemas import patterns
from botfleet.api.schemas.bots import BotCreate, BotCreated, BotList, BotOut, BotRestored, BotStatus
from botfleet.bot_queries import BotFilter
from botfleet.bot_spec import NewBot
from botfleet.bots import BotService
from botfleet.errors import InvalidInput
from botfleet.store.models import utcnow

router = APIRouter(prefix="/bots", tags=["bots"])
# The operations on one bot, reachable from a created bot's id (OpenAPI links: generated
# clients and Schemathesis' stateful phase follow them).
BOT_LINKS = {
    "GetBot": "get_bot",
    "DeleteBot": "delete_bot",
    "RestoreBot": "restore_bot",
    "PostResults": "post_results",
    "ListResults": "list_results",
}


async def bot_service(services: ServicesDep) -> BotService:
    return BotService(sessions=services.sessions, fleet=services.fleet, settings=services.settings)


BotsDep = Annotated[BotService, Depends(bot_service)]


def parse_label_filters(labels: list[str]) -> dict[str, str]:
    """``label=team=ops`` (repeatable; all must match)."""
    parsed: dict[str, str] = {}
    for item in labels:
        if not patterns.matches(patterns.LABEL_SELECTOR, item):
            # No stored label holds a control character (BotCreate refuses them), and
            # PostgreSQL cannot compare NUL.
            raise InvalidInput(
                "label",
                f"{item[:80]!r} is not key=value with a label key and no control characters",
            )
        key, _, value = item.partition("=")
        parsed[key] = value
    return parsed


def _links(*names: str) -> dict[str, dict[str, object]]:
    return {
        name: {"operationId": BOT_LINKS[name], "parameters": {"bot_id": "$response.body#/id"}}
        for name in names
    }


@router.post(
    "",
    status_code=201,
    response_model=BotCreated,
    responses={
        **errors(*AUTH, *BODY, 409, 502, 503),
        201: {"links": _links(*BOT_LINKS), "description": "The bot, running, with its token."},
    },
)
async def create_bot(body: BotCreate, bots: BotsDep, _admin: AdminDep) -> BotCreated:
    """Start a bot's container and answer with the bot and, this once, its token."""
    new = NewBot(
        name=body.name,
        image=body.image,
        command=body.command,
        env=body.env,
        labels=body.labels,
        placement=tuple(body.placement),
        resources=body.resources.to_resources() if body.resources else None,
    )
    bot, token = await bots.create(new, now=utcnow())
    return BotCreated.model_validate({**BotOut.model_validate(bot).model_dump(), "token": token})


@router.get("", response_model=BotList, responses=errors(*AUTH, 422))
async def list_bots(
    bots: BotsDep,
    _admin: AdminDep,
    page: PageDep,
    label: list[str] = label_query("`key=value`, repeatable; a bot must carry every one."),
    status: BotStatus | None = Query(None, description="Only bots with this status."),
    include_deleted: bool = Query(False, description="Also soft-deleted bots."),
) -> BotList:
    """Newest first; a page is `{"items", "total", "next_cursor"}`."""
    flt = BotFilter(
        labels=parse_label_filters(label), status=status, include_deleted=include_deleted
    )
    found = await bots.list(flt, page)
    return BotList(
        items=[BotOut.model_validate(b) for b in found.items],
        total=found.total,
        next_cursor=found.next_cursor,
    )


@router.get("/{bot_id}", response_model=BotOut, responses=errors(*AUTH, 404, 422))
async def get_bot(bot_id: uuid.UUID, bots: BotsDep, _admin: AdminDep) -> BotOut:
    """Soft-deleted bots are still readable (with ``deleted_at``); purged ones are 404."""
    return BotOut.model_validate(await bots.get(bot_id))


@router.delete("/{bot_id}", response_model=BotOut, responses=errors(*AUTH, 404, 422))
async def delete_bot(bot_id: uuid.UUID, bots: BotsDep, _admin: AdminDep) -> BotOut:
    """Soft delete: set ``deleted_at`` and stop the container (kept for the cleanup service).
    Idempotent; the bot stays readable and restorable until the retention purges it."""
    return BotOut.model_validate(await bots.delete(bot_id, now=utcnow()))


@router.post(
    "/{bot_id}/restore",
    response_model=BotRestored,
    responses=errors(*AUTH, 404, 409, 422, 502, 503),
)
async def restore_bot(bot_id: uuid.UUID, bots: BotsDep, _admin: AdminDep) -> BotRestored:
    """Within retention: clear ``deleted_at`` and run the bot again."""
    bot, token = await bots.restore(bot_id, now=utcnow())
    return BotRestored.model_validate({**BotOut.model_validate(bot).model_dump(), "token": token})
