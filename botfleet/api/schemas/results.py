"""Bodies of the result endpoints: any JSON the store keeps the same on both backends.

The document declares that JSON by what it must not hold, ``not: Unstorable``
(``api/openapi.py``): text with NUL, numbers beyond the signed 64-bit range, at any depth; and
lone surrogates, said in words (validators built on Rust cannot hold them in a pattern). JSON
Schema cannot tell ``1e20`` from ``100000000000000000000``, so the range holds for every number,
not only for integers.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
)
from pydantic.config import JsonDict

from botfleet.constants import MAX_RESULTS_PER_POST

NUMBER_MIN = -(2**63)
NUMBER_MAX = 2**63 - 1
UNSTORABLE = "Unstorable"
# A negation, not a recursive union: generators (openapi-python-client) cannot follow a union
# that holds itself, and they read ``not`` as any value.
Storable = Annotated[Any, WithJsonSchema({"not": {"$ref": f"#/components/schemas/{UNSTORABLE}"}})]
RESULT_EXAMPLE: JsonDict = {
    "id": 42,
    "bot_id": "6f1c1b1e-8a8e-4d0b-9a51-0d8f6c1b7d21",
    "created_at": "2026-11-26T09:00:04.000000Z",
    "data": {"seq": 2, "bot": "hello"},
}
# The two shapes of a result post, by what the body is; ``api/errors.py`` leaves these names
# out of the field a validation error names.
SINGLE, BATCH = "single", "batch"
BODY_UNION_TAGS = (SINGLE, BATCH)


def unstorable(text: str) -> bool:
    """NUL or a lone surrogate: PostgreSQL's text and JSONB cannot hold them (a 500, not a 422)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:  # strict UTF-8 refuses exactly the surrogate code points, at C speed
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_storable(value: Any) -> None:
    """Raise ValueError if a JSON value holds what the store cannot keep the same on both
    backends: NUL or lone surrogates in a string or key, NaN or Infinity (not JSON at all),
    numbers beyond the signed 64-bit range."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        # The shapes json.loads makes, by exact type first: this runs for every value of every
        # posted result (BENCHMARKS.md, "Result ingest: where a post's time went").
        if kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
            continue
        if kind is list:
            stack.extend(item)
            continue
        if kind is str:
            if unstorable(item):
                raise ValueError("strings must not contain NUL (\\u0000) or lone surrogates")
            continue
        if kind is bool or item is None:
            continue
        if isinstance(item, str) and unstorable(item):
            raise ValueError("strings must not contain NUL (\\u0000) or lone surrogates")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
        if isinstance(item, int | float) and not NUMBER_MIN <= item <= NUMBER_MAX:
            # SQLite would keep a bigger integer as a float, silently rounded.
            raise ValueError("numbers must be within the signed 64-bit range")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class ResultIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"data": {"seq": 2, "bot": "hello"}}]}
    )

    data: Storable = Field(description="Any JSON value the store can keep.")

    @field_validator("data")
    @classmethod
    def _data(cls, value: Any) -> Any:
        check_storable(value)
        return value


ResultsIn = Annotated[list[ResultIn], Field(min_length=1, max_length=MAX_RESULTS_PER_POST)]


def _shape(body: Any) -> str:
    return BATCH if isinstance(body, list) else SINGLE


# One result or a list of them; the body's own shape picks the branch, so a refusal names the
# fields of that branch only.
ResultsBody = Annotated[
    Annotated[ResultIn, Tag(SINGLE)] | Annotated[ResultsIn, Tag(BATCH)], Discriminator(_shape)
]


class ResultOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [RESULT_EXAMPLE]}
    )

    id: int
    bot_id: uuid.UUID
    created_at: datetime
    data: Any


class ResultList(BaseModel):
    items: list[ResultOut]
    total: int = Field(ge=0, description="Results of the bot, on every page.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class ResultsAccepted(BaseModel):
    accepted: int = Field(ge=1, description="Results stored by this post.")
