"""Bodies of the bot and result endpoints: bounded, with errors that name the field.

Limits keep one request from storing megabytes in a row or an environment; the whole body is
capped at 1 MiB anyway (``api/limits.py``).
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from botfleet.api.schemas.placement import (
    PLACEMENT_MAX_ITEMS,
    Constraint,
    ResourcesIn,
    check_constraints,
)
from botfleet.constants import MAX_RESULTS_PER_POST, RESERVED_ENV, RESERVED_LABELS

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

# https://github.com/distribution/reference/blob/main/reference.go (the grammar docker uses)
# A first component is a registry only if it has a dot or a port, or is localhost.
_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:(?:localhost|{_HOST}(?:\.{_HOST})+)(?::[0-9]+)?/|{_HOST}:[0-9]+/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"(?::[\w][\w.-]{0,127})?"
_DIGEST = r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
IMAGE_RE = re.compile(rf"^{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}$")
# POSIX-portable variable names, as docker run --env expects them.
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Docker's label-key guideline: lower-case alphanumerics separated by single '.' or '-'.
LABEL_KEY_RE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")
DOCKER_RESERVED_LABEL_PREFIXES = ("com.docker.", "io.docker.", "org.dockerproject.")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _unstorable(text: str) -> bool:
    """NUL or a lone surrogate: PostgreSQL's text and JSONB cannot hold them (a 500, not a 422)."""
    return "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text)


def check_storable(value: Any) -> None:
    """Raise ValueError if a JSON value holds what the store cannot keep the same on both
    backends: NUL or lone surrogates in a string or key, NaN or Infinity (not JSON at all),
    integers beyond 64 bits."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and _unstorable(item):
            raise ValueError("strings must not contain NUL (\\u0000) or lone surrogates")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
        if isinstance(item, int) and not -(2**63) <= item < 2**63:
            # SQLite would keep a bigger one as a float, silently rounded.
            raise ValueError("integers must fit in 64 bits")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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


class BotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    image: str = Field(min_length=1, max_length=IMAGE_MAX)
    command: list[Annotated[str, Field(max_length=COMMAND_ITEM_MAX)]] | None = Field(
        None, max_length=COMMAND_MAX_ITEMS
    )
    env: dict[str, str] = Field(default_factory=dict, max_length=ENV_MAX_ITEMS)
    labels: dict[str, str] = Field(default_factory=dict, max_length=LABELS_MAX_ITEMS)
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
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not IMAGE_RE.match(value):
            raise ValueError(f"{value[:80]!r} is not an image reference such as repo/name:tag")
        if len(engine_repository_name(value)) > IMAGE_MAX:
            raise ValueError(
                f"the repository name may be at most {IMAGE_MAX} characters in full "
                "(with docker.io/library/ for short names)"
            )
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
            if len(key) > ENV_KEY_MAX or not ENV_KEY_RE.match(key):
                raise ValueError(
                    f"key {key[:80]!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
                )
            if key in RESERVED_ENV:
                raise ValueError(f"key {key!r} is set by botfleet and cannot be overridden")
            if len(item) > ENV_VALUE_MAX or _unstorable(item):
                raise ValueError(
                    f"value of {key!r} must be at most {ENV_VALUE_MAX} characters "
                    "without NUL or lone surrogates"
                )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if len(key) > LABEL_KEY_MAX or not LABEL_KEY_RE.match(key):
                raise ValueError(
                    f"key {key[:80]!r} must be lower-case letters and digits separated by "
                    "single '.' or '-' (Docker's label syntax)"
                )
            if key in RESERVED_LABELS or key.startswith(DOCKER_RESERVED_LABEL_PREFIXES):
                raise ValueError(f"key {key!r} is reserved")
            if len(item) > LABEL_VALUE_MAX or _has_control(item) or _unstorable(item):
                raise ValueError(
                    f"value of {key!r} must be at most {LABEL_VALUE_MAX} characters "
                    "without control characters"
                )
        return value


class BotOut(BaseModel):
    """A bot as the API shows it; its env is never echoed (it may hold secrets)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    image: str
    command: list[str] | None
    labels: dict[str, str]
    status: str
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
    deleted_at: datetime | None


class BotCreated(BotOut):
    token: str = Field(description="The bot's token; shown this once, stored only as a hash.")


class BotRestored(BotOut):
    token: str | None = Field(
        None,
        description="A new token, if the bot runs with one: a fresh container (the old one was "
        "gone) or a swarm service.",
    )


class BotList(BaseModel):
    items: list[BotOut]
    total: int
    next_cursor: str | None


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Any

    @field_validator("data")
    @classmethod
    def _data(cls, value: Any) -> Any:
        check_storable(value)
        return value


ResultsIn = Annotated[list[ResultIn], Field(min_length=1, max_length=MAX_RESULTS_PER_POST)]


class ResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    bot_id: uuid.UUID
    created_at: datetime
    data: Any


class ResultList(BaseModel):
    items: list[ResultOut]
    total: int
    next_cursor: str | None


class ResultsAccepted(BaseModel):
    accepted: int
