"""Bodies of the bot endpoints: bounded, with errors that name the field.

Limits keep one request from storing megabytes in a row or an environment; the whole body is
capped at 1 MiB anyway (``api/limits.py``). Each constraint is declared in the OpenAPI document
with the pattern the validator itself checks (``patterns.py``), so the two cannot disagree; the
validators stay ours for messages that say what is accepted.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic.config import JsonDict

from botfleet.api.schemas import patterns
from botfleet.api.schemas.placement import (
    PLACEMENT_MAX_ITEMS,
    Constraint,
    ResourcesIn,
    check_constraints,
)
from botfleet.api.schemas.results import unstorable
from botfleet.constants import RESERVED_ENV

NAME_MAX = 100
IMAGE_MAX = 255
COMMAND_MAX_ITEMS = 256
COMMAND_ITEM_MAX = 4096
ENV_MAX_ITEMS = 128
ENV_KEY_MAX = 256
ENV_VALUE_MAX = 32 * 1024
LABELS_MAX_ITEMS = 64
LABEL_KEY_MAX = 128
LABEL_VALUE_MAX = 256

BotStatus = Literal["pending", "running", "exited", "failed", "stopped", "deleted"]

BOT_EXAMPLE: JsonDict = {
    "id": "6f1c1b1e-8a8e-4d0b-9a51-0d8f6c1b7d21",
    "name": "hello",
    "image": "botfleet/sample-bot:latest",
    "command": None,
    "labels": {"team": "demo"},
    "status": "running",
    "exit_code": None,
    "container_id": "4f9a1c0e2b7d6a5f3e8c9b0a1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e",
    "engine": "local",
    "created_at": "2026-11-26T09:00:00.000000Z",
    "updated_at": "2026-11-26T09:00:01.250000Z",
    "deleted_at": None,
}


def _string(pattern: str, max_length: int) -> JsonDict:
    return {"type": "string", "maxLength": max_length, "pattern": pattern}


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def engine_repository_name(reference: str) -> str:
    """The repository name as the engine spells it in full: ``busybox`` is
    ``docker.io/library/busybox`` (distribution/reference's splitDockerDomain). The engine
    refuses one longer than 255 characters, so the API must refuse it first (a 422, not a 502)."""
    name = reference.split("@", 1)[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        domain, rest = "docker.io", name
    else:
        domain = "docker.io" if first == "index.docker.io" else first
    if domain == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return f"{domain}/{rest}"


CommandItem = Annotated[
    str,
    Field(max_length=COMMAND_ITEM_MAX),
    WithJsonSchema(_string(patterns.COMMAND_ITEM, COMMAND_ITEM_MAX)),
]


class BotCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "hello",
                    "image": "botfleet/sample-bot:latest",
                    "env": {"RESULT_INTERVAL_SECONDS": "2"},
                    "labels": {"team": "demo"},
                }
            ]
        },
    )

    name: str = Field(
        min_length=1,
        max_length=NAME_MAX,
        description="Unique among live bots; no control characters, not blank.",
        json_schema_extra={"pattern": patterns.NAME},
    )
    image: str = Field(
        min_length=1,
        max_length=IMAGE_MAX,
        description="An image reference (`repo/name:tag`, `name@sha256:…`); the engine must "
        "hold it or be able to pull it.",
        json_schema_extra={"pattern": patterns.IMAGE},
    )
    command: list[CommandItem] | None = Field(
        None, max_length=COMMAND_MAX_ITEMS, description="Overrides the image's command."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        max_length=ENV_MAX_ITEMS,
        description="Environment of the container; BOT_ID, BOT_TOKEN and MAIN_SERVER_URL are "
        "botfleet's own; values without NUL or lone surrogates.",
        json_schema_extra={
            "propertyNames": _string(patterns.ENV_KEY, ENV_KEY_MAX),
            "additionalProperties": _string(patterns.ENV_VALUE, ENV_VALUE_MAX),
        },
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        max_length=LABELS_MAX_ITEMS,
        description="The tags retention policies select on (Docker's label syntax); values "
        "without control characters or lone surrogates.",
        json_schema_extra={
            "propertyNames": _string(patterns.LABEL_KEY, LABEL_KEY_MAX),
            "additionalProperties": _string(patterns.LABEL_VALUE, LABEL_VALUE_MAX),
        },
    )
    placement: list[Constraint] = Field(
        default_factory=list,
        max_length=PLACEMENT_MAX_ITEMS,
        description="swarm constraints, e.g. node.labels.zone==eu (BOT_RUNTIME=swarm)",
    )
    resources: ResourcesIn | None = Field(
        None, description="CPU and memory limits and reservations (BOT_RUNTIME=swarm)"
    )

    @field_validator("placement")
    @classmethod
    def _placement(cls, value: list[str]) -> list[str]:
        return check_constraints(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if _has_control(value):
            raise ValueError("must not contain control characters")
        if not value.strip() or not patterns.matches(patterns.NAME, value):
            raise ValueError("must not be blank")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if len(engine_repository_name(value)) > IMAGE_MAX:
            raise ValueError(
                f"the repository name may be at most {IMAGE_MAX} characters in full "
                "(with docker.io/library/ for short names)"
            )
        if not patterns.matches(patterns.IMAGE, value):
            raise ValueError(f"{value[:80]!r} is not an image reference such as repo/name:tag")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value and any("\x00" in part for part in value):
            raise ValueError("must not contain NUL characters")
        return value or None

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if len(key) > ENV_KEY_MAX or not patterns.matches(patterns.ENV_KEY, key):
                if key in RESERVED_ENV:
                    raise ValueError(f"key {key!r} is set by botfleet and cannot be overridden")
                raise ValueError(
                    f"key {key[:80]!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
                )
            if len(item) > ENV_VALUE_MAX or unstorable(item):
                raise ValueError(
                    f"value of {key!r} must be at most {ENV_VALUE_MAX} characters "
                    "without NUL or lone surrogates"
                )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if len(key) > LABEL_KEY_MAX or not patterns.matches(patterns.LABEL_KEY, key):
                if patterns.matches(f"^{patterns.LABEL_KEY_SYNTAX}{patterns.END}", key):
                    raise ValueError(f"key {key!r} is reserved")
                raise ValueError(
                    f"key {key[:80]!r} must be lower-case letters and digits separated by "
                    "single '.' or '-' (Docker's label syntax)"
                )
            storable = patterns.matches(patterns.LABEL_VALUE, item) and not unstorable(item)
            if len(item) > LABEL_VALUE_MAX or not storable:
                raise ValueError(
                    f"value of {key!r} must be at most {LABEL_VALUE_MAX} characters "
                    "without control characters"
                )
        return value


class BotOut(BaseModel):
    """A bot as the API shows it; its env is never echoed (it may hold secrets)."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [BOT_EXAMPLE]})

    id: uuid.UUID
    name: str
    image: str
    command: list[str] | None
    labels: dict[str, str]
    status: BotStatus
    exit_code: int | None
    container_id: str | None
    engine: str | None
    node: str | None = Field(None, description="where its current task runs (a swarm)")
    status_detail: str | None = Field(
        None, description="why it is pending or failed, as the swarm says"
    )
    placement: list[str] | None = None
    resources: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = Field(description="Set by a soft delete; null while live.")


class BotCreated(BotOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**BOT_EXAMPLE, "token": "q3V9…one-time-token"}]}
    )

    token: str = Field(description="The bot's token; shown this once, stored only as a hash.")


class BotRestored(BotOut):
    token: str | None = Field(
        None,
        description="A new token, if the bot runs with one: a fresh container (the old one was "
        "gone) or a swarm service.",
    )


class BotList(BaseModel):
    items: list[BotOut]
    total: int = Field(ge=0, description="Bots that match, on every page.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")
