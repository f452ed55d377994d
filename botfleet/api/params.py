"""Query parameters that several routes share, each with its bounds in the document."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import Depends, Query

from botfleet.api.schemas import patterns
from botfleet.constants import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT
from botfleet.errors import InvalidInput
from botfleet.pagination import MAX_CURSOR_LENGTH, MAX_OFFSET, PageRequest

# RFC 3339's date-time (section 5.6), any number of fraction digits; a zone may be left out
# (then it is UTC).
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)


def limit_query(description: str = "Page size.") -> Any:
    return Query(DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT, description=description)


def offset_query() -> Any:
    return Query(
        None,
        ge=0,
        le=MAX_OFFSET,
        description="Items to skip (counted from the cursor's position with one).",
    )


def cursor_query(name: str = "cursor") -> Any:
    return Query(
        None,
        alias=name,
        min_length=1,
        max_length=MAX_CURSOR_LENGTH,
        description="Opaque: the `next_cursor` of the previous page (422 if this server did "
        "not issue it).",
    )


async def page_request(
    limit: int = limit_query(),
    offset: int | None = offset_query(),
    cursor: str | None = cursor_query(),
) -> PageRequest:
    return PageRequest(limit=limit, offset=offset, cursor=cursor)


PageDep = Annotated[PageRequest, Depends(page_request)]


def time_query(description: str) -> Any:
    return Query(None, description=description, json_schema_extra={"format": "date-time"})


MAX_LABEL_FILTERS = 20


def label_query(description: str) -> Any:
    """``label=key=value``, repeatable, up to :data:`MAX_LABEL_FILTERS`, each in the documented
    pattern (``parse_label_filters`` checks it again and names the field)."""
    return Query(
        [],
        max_length=MAX_LABEL_FILTERS,
        description=description,
        json_schema_extra={"items": {"type": "string", "pattern": patterns.LABEL_SELECTOR}},
    )


def parse_time(field: str, value: str | None) -> datetime | None:
    """An RFC 3339 date-time as an aware UTC datetime; :class:`InvalidInput` naming ``field``
    otherwise. Written out, not left to pydantic, which also takes a number of seconds."""
    if value is None:
        return None
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        raise InvalidInput(field, f"{value[:40]!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(found[i]) for i in range(1, 7))
    micro = int((found[7] or "0")[:6].ljust(6, "0"))
    if second == 60:  # a leap second: the last instant of the minute before it
        second, micro = 59, 999_999
    if year == 0:  # RFC 3339 has a year 0; Python's first is 1: both are before any row
        return datetime.min.replace(tzinfo=UTC)
    try:
        zone = UTC
        if found[9]:
            offset = timedelta(hours=int(found[10]), minutes=int(found[11]))
            zone = timezone(offset if found[9] == "+" else -offset)
        at = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError:
        raise InvalidInput(field, f"{value[:40]!r} is not a date-time there is") from None
    try:
        return at.astimezone(UTC)
    except OverflowError:  # a zone that moves it past the first or last year Python has
        return (datetime.min if year < 5000 else datetime.max).replace(tzinfo=UTC)
