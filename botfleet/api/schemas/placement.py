"""Where a bot may run and what it may use (``BOT_RUNTIME=swarm``): placement constraints and
CPU/memory limits and reservations, checked here for their form; what swarm itself refuses
(an attribute it does not know, a limit no node can meet) it says, and the API passes on."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from botfleet.api.schemas import patterns
from botfleet.runtime.base import Resources

PLACEMENT_MAX_ITEMS = 16
CONSTRAINT_MAX = 256
_UNITS = {"m": 1024**2, "g": 1024**3, "t": 1024**4}
MEMORY_MIN = 6 * 1024**2  # what docker accepts at the least
MEMORY_MAX = 1024**4
CPU_MIN = 0.001  # swarm's floor: a thousandth of a core
CPU_MAX = 1024.0
MEMORY_HELP = "bytes (an integer), or a size from 6M to 1T such as 256M or 1G"

Constraint = Annotated[
    str,
    Field(min_length=1, max_length=CONSTRAINT_MAX),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": CONSTRAINT_MAX,
            "pattern": patterns.CONSTRAINT,
            "examples": ["node.labels.zone==eu"],
        }
    ),
]


def check_constraints(value: list[str]) -> list[str]:
    for item in value:
        if not patterns.matches(patterns.CONSTRAINT, item):
            raise ValueError(
                f"{item[:80]!r} is not a constraint such as node.labels.zone==eu "
                "(node.* or engine.* attribute, == or !=, a value without spaces)"
            )
    return [item.strip() for item in value]


def memory_bytes(value: Any) -> int:
    """``512M``, ``1G``, ``1048576``: bytes, from 6 MiB (docker's floor) to 1 TiB."""
    if isinstance(value, bool):
        raise ValueError(f"accepts {MEMORY_HELP}")
    if isinstance(value, int):
        if not MEMORY_MIN <= value <= MEMORY_MAX:
            raise ValueError(f"must be from {MEMORY_MIN} bytes (6M) to {MEMORY_MAX} (1T)")
        return value
    text = str(value)
    if not patterns.matches(patterns.MEMORY_SIZE, text):
        raise ValueError(f"accepts {MEMORY_HELP}")
    digits = text.rstrip("bB")
    return int(digits[:-1]) * _UNITS[digits[-1].lower()]


Cpus = Annotated[float, Field(ge=CPU_MIN, le=CPU_MAX, description="cores, e.g. 0.5")]
Memory = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MEMORY_MIN, "maximum": MEMORY_MAX},
                {"type": "string", "pattern": patterns.MEMORY_SIZE},
            ],
            "description": MEMORY_HELP,
        }
    ),
]


class ResourcesIn(BaseModel):
    """CPU in cores, memory in bytes or as ``256M``/``1G``; a reservation is at most its limit
    (the engine refuses a memory reservation above the limit; the API says so first)."""

    model_config = ConfigDict(extra="forbid")

    cpu_limit: Cpus | None = None
    memory_limit: Memory | None = None
    cpu_reservation: Cpus | None = None
    memory_reservation: Memory | None = None

    @field_validator("memory_limit", "memory_reservation")
    @classmethod
    def _memory(cls, value: Any) -> int | None:
        return None if value is None else memory_bytes(value)

    @model_validator(mode="after")
    def _reservations_fit(self) -> ResourcesIn:
        pairs: list[tuple[str, Any, Any]] = [
            ("cpu", self.cpu_reservation, self.cpu_limit),
            ("memory", self.memory_reservation, self.memory_limit),
        ]
        for what, reserved, limit in pairs:
            if reserved is not None and limit is not None and float(reserved) > float(limit):
                raise ValueError(f"{what}_reservation must not exceed {what}_limit")
        return self

    def to_resources(self) -> Resources | None:
        values = self.model_dump(exclude_none=True)
        return Resources(**values) if values else None
