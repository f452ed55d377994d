"""The dashboard's fleet view: bots with their latest figures, and a bot's history."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from botfleet.api.schemas.bots import BotOut


class FleetBot(BotOut):
    last_result_at: datetime | None = Field(description="Its newest result's time; null: none.")
    results_last_hour: int = Field(ge=0, description="Results it posted in the last hour.")


class FleetList(BaseModel):
    items: list[FleetBot]
    total: int = Field(ge=0, description="Bots that match, on every page.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")
    counts: dict[str, int] = Field(
        description="Bots per status among those the labels and the name select (every status, "
        "deleted included, whatever `status` says)."
    )


class HistoryItem(BaseModel):
    at: datetime
    event: str = Field(
        description="`created`, `deleted`, `restored`, `planned` (a cleanup run's plan "
        "included it: its purge, or its workload's removal) or `container_removed`."
    )
    detail: str
    run_id: uuid.UUID | None = Field(
        None, description="The cleanup run, if one did it or planned it."
    )


class HistoryList(BaseModel):
    items: list[HistoryItem] = Field(description="Oldest first.")
    total: int = Field(ge=0)
    next_cursor: None = Field(None, description="Always null: a history is one page.")
