"""Pages of a list: ``{"items", "total", "next_cursor"}`` with offset or keyset cursors.

A cursor is the sort key of the last item served, so paging stays stable while rows are added in
front (newest first); an offset is there for operators who want page N. The cursor is opaque to
clients (base64 of JSON) but carries no secret, so it is not signed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from botfleet.constants import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT
from botfleet.errors import InvalidInput

T = TypeVar("T")
MAX_OFFSET = 2**31 - 1
# Ours are far shorter; the bound keeps a forged one from costing a large decode.
MAX_CURSOR_LENGTH = 512


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_PAGE_LIMIT
    offset: int | None = None
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_LIMIT:
            raise InvalidInput("limit", f"accepts 1 to {MAX_PAGE_LIMIT}")
        if self.offset is not None and not 0 <= self.offset <= MAX_OFFSET:
            # An unbounded offset overflows the database's integer (a 500); use the cursor.
            raise InvalidInput("offset", f"accepts a whole number from 0 to {MAX_OFFSET}")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: str | None


def encode_cursor(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The sort key a cursor carries; :class:`InvalidInput` if it is not one we issued."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        key = None
    if not isinstance(key, list) or len(key) != size:
        raise InvalidInput("cursor", "is not a cursor this server issued")
    return key
