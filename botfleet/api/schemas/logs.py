"""A bot's container log lines, as the engine stamped them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from botfleet.runtime.log_stream import LogLine


class LogLineOut(BaseModel):
    at: datetime | None = Field(description="When the engine received the line (UTC).")
    stream: Literal["stdout", "stderr"]
    line: str = Field(description="The text, without its end of line.")

    @classmethod
    def of(cls, line: LogLine) -> LogLineOut:
        return cls(at=line.at, stream=line.stream, line=line.text)  # type: ignore[arg-type]


class LogList(BaseModel):
    items: list[LogLineOut] = Field(description="Oldest first, the last `tail` lines.")
    total: int = Field(ge=0, description="Lines in `items` (a tail is one page).")
    next_cursor: None = Field(None, description="Always null: a tail is one page.")
