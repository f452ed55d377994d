"""Query parameters that several routes share, each with its bounds in the document."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query

from botfleet.constants import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT
from botfleet.pagination import MAX_CURSOR_LENGTH, MAX_OFFSET, PageRequest


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
