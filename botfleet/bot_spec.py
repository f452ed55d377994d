"""What a bot runs as: the container spec botfleet asks an engine for — its name, the
environment every bot finds, the labels every container of botfleet carries."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botfleet.config import Settings
from botfleet.constants import (
    CONTAINER_NAME_PREFIX,
    ENV_BOT_ID,
    ENV_BOT_TOKEN,
    ENV_MAIN_SERVER_URL,
    LABEL_BOT_ID,
    LABEL_INSTANCE,
    LABEL_MANAGED,
)
from botfleet.runtime.base import ContainerSpec, Resources
from botfleet.store.models import Bot


@dataclass(frozen=True)
class NewBot:
    """What an operator asks for; validated by the caller (the API's schemas)."""

    name: str
    image: str
    command: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    placement: Sequence[str] = ()  # swarm constraints, e.g. node.labels.zone==eu
    resources: Resources | None = None


def resources_json(resources: Resources | None) -> dict[str, Any] | None:
    """How a bot row keeps its resources (only what was asked for)."""
    if resources is None:
        return None
    return {k: v for k, v in dataclasses.asdict(resources).items() if v is not None}


def container_name(bot_id: uuid.UUID) -> str:
    """Derived from the id, never from the user's name: unique, and safe for any engine."""
    return f"{CONTAINER_NAME_PREFIX}{bot_id}"


def container_spec(bot: Bot, token: str, settings: Settings) -> ContainerSpec:
    env = {
        **bot.env,
        ENV_BOT_ID: str(bot.id),
        ENV_BOT_TOKEN: token,
        ENV_MAIN_SERVER_URL: settings.main_server_url,
    }
    labels = {
        **bot.labels,
        LABEL_MANAGED: "true",
        LABEL_BOT_ID: str(bot.id),
        LABEL_INSTANCE: settings.botfleet_instance,
    }
    return ContainerSpec(
        name=container_name(bot.id),
        image=bot.image,
        command=bot.command,
        env=env,
        labels=labels,
        network=settings.bot_network,
        placement=tuple(bot.placement or ()),
        resources=Resources(**bot.resources) if bot.resources else None,
    )
