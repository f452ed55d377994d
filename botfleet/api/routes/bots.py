"""Bot management: create, list, show, soft delete, restore (admin token)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from botfleet.api.deps import AdminDep, ServicesDep
from botfleet.api.schemas.bots import (
    LABEL_KEY_RE,
    BotCreate,
    BotCreated,
    BotList,
    BotOut,
    BotRestored,
)
from botfleet.bot_queries import BotFilter
from botfleet.bot_spec import NewBot
from botfleet.bots import BotService
from botfleet.constants import BOT_STATUSES, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT
from botfleet.errors import InvalidInput
from botfleet.pagination import PageRequest
from botfleet.store.models import utcnow

router = APIRouter(prefix="/bots", tags=["bots"])


async def bot_service(services: ServicesDep) -> BotService:
    return BotService(sessions=services.sessions, fleet=services.fleet, settings=services.settings)


BotsDep = Annotated[BotService, Depends(bot_service)]


async def page_request(
    limit: int = Query(DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT),
    offset: int | None = Query(None, ge=0),
    cursor: str | None = Query(None, max_length=512),
) -> PageRequest:
    return PageRequest(limit=limit, offset=offset, cursor=cursor)


PageDep = Annotated[PageRequest, Depends(page_request)]


def parse_label_filters(labels: list[str]) -> dict[str, str]:
    """``label=team=ops`` (repeatable; all must match)."""
    parsed: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not LABEL_KEY_RE.match(key):
            raise InvalidInput("label", f"{item[:80]!r} is not key=value with a label key")
        if any(c < " " or "\ud800" <= c <= "\udfff" for c in value):
            # No stored label holds one (BotCreate refuses them); PostgreSQL cannot compare NUL.
            raise InvalidInput("label", f"{item[:80]!r}: values hold no control characters")
        parsed[key] = value
    return parsed


def parse_status(status: str | None) -> str | None:
    if status is not None and status not in BOT_STATUSES:
        raise InvalidInput("status", f"{status[:40]!r} is not one of {', '.join(BOT_STATUSES)}")
    return status


@router.post("", status_code=201, response_model=BotCreated)
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


@router.get("", response_model=BotList)
async def list_bots(
    bots: BotsDep,
    _admin: AdminDep,
    page: PageDep,
    label: list[str] = Query([], max_length=20, description="key=value, repeatable"),
    status: str | None = Query(None, description=", ".join(BOT_STATUSES)),
    include_deleted: bool = False,
) -> BotList:
    flt = BotFilter(
        labels=parse_label_filters(label),
        status=parse_status(status),
        include_deleted=include_deleted,
    )
    found = await bots.list(flt, page)
    return BotList(
        items=[BotOut.model_validate(b) for b in found.items],
        total=found.total,
        next_cursor=found.next_cursor,
    )


@router.get("/{bot_id}", response_model=BotOut)
async def get_bot(bot_id: uuid.UUID, bots: BotsDep, _admin: AdminDep) -> BotOut:
    """Soft-deleted bots are still readable (with ``deleted_at``); purged ones are 404."""
    return BotOut.model_validate(await bots.get(bot_id))


@router.delete("/{bot_id}", response_model=BotOut)
async def delete_bot(bot_id: uuid.UUID, bots: BotsDep, _admin: AdminDep) -> BotOut:
    """Soft delete: set ``deleted_at`` and stop the container (kept for the cleanup service)."""
    return BotOut.model_validate(await bots.delete(bot_id, now=utcnow()))


@router.post("/{bot_id}/restore", response_model=BotRestored)
async def restore_bot(bot_id: uuid.UUID, bots: BotsDep, _admin: AdminDep) -> BotRestored:
    """Within retention: clear ``deleted_at`` and run the bot again."""
    bot, token = await bots.restore(bot_id, now=utcnow())
    return BotRestored.model_validate({**BotOut.model_validate(bot).model_dump(), "token": token})
