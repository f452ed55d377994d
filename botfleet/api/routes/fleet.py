"""The dashboard's fleet view (admin token): ``GET /fleet`` — a page of bots with their latest
figures and the count per status — and ``GET /bots/{id}/history``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from botfleet.api.deps import AdminDep, ServicesDep
from botfleet.api.params import PageDep, label_query
from botfleet.api.responses import AUTH, errors
from botfleet.api.routes.bots import parse_label_filters
from botfleet.api.schemas import patterns
from botfleet.api.schemas.bots import BotOut, BotStatus
from botfleet.api.schemas.fleet import FleetBot, FleetList, HistoryItem, HistoryList
from botfleet.bot_history import bot_history
from botfleet.bot_queries import BotFilter
from botfleet.errors import InvalidInput
from botfleet.fleet_view import fleet_page
from botfleet.store.models import utcnow

router = APIRouter(tags=["fleet"])
NAME_SEARCH_MAX = 100


@router.get("/fleet", response_model=FleetList, responses=errors(*AUTH, 422))
async def get_fleet(
    services: ServicesDep,
    _admin: AdminDep,
    page: PageDep,
    label: list[str] = label_query("`key=value`, repeatable; a bot must carry every one."),
    status: BotStatus | None = Query(
        None, description="Only this status (`deleted`: the soft-deleted bots); none: live bots."
    ),
    q: str | None = Query(
        None,
        min_length=1,
        max_length=NAME_SEARCH_MAX,
        description="Part of the name, any case.",
        json_schema_extra={"pattern": patterns.LABEL_VALUE},
    ),
) -> FleetList:
    """Newest first, by cursor; each bot with its newest result's time and its results in the
    last hour; ``counts`` per status for the labels and name asked for."""
    if q is not None and not patterns.matches(patterns.LABEL_VALUE, q):
        # No name holds a control character (BotCreate refuses them).
        raise InvalidInput("q", "must not contain control characters")
    flt = BotFilter(labels=parse_label_filters(label), status=status, name_contains=q)
    found = await fleet_page(services.sessions, flt, page, now=utcnow())
    items = [
        FleetBot(
            **BotOut.model_validate(row.bot).model_dump(),
            last_result_at=row.last_result_at,
            results_last_hour=row.results_last_hour,
        )
        for row in found.rows
    ]
    return FleetList(
        items=items, total=found.total, next_cursor=found.next_cursor, counts=found.counts
    )


@router.get("/bots/{bot_id}/history", response_model=HistoryList, responses=errors(*AUTH, 404, 422))
async def get_history(bot_id: uuid.UUID, services: ServicesDep, _admin: AdminDep) -> HistoryList:
    """Created, deleted and restored, the cleanup runs whose plan included it, and those that
    removed its container."""
    events = await bot_history(
        services.sessions, bot_id, instance=services.settings.botfleet_instance
    )
    items = [HistoryItem(at=e.at, event=e.event, detail=e.detail, run_id=e.run_id) for e in events]
    return HistoryList(items=items, total=len(items))
