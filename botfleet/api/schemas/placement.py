"""Where a bot may run and what it may use (``BOT_RUNTIME=swarm``): placement constraints and
CPU/memory limits and reservations, checked here for their form; what swarm itself refuses
(an attribute it does not know, a limit no node can meet) it says, and the API passes on."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from botfleet.runtime.base import Resources

PLACEMENT_MAX_ITEMS = 16
CONSTRAINT_MAX = 256
# docker service create --constraint: <attribute> == or != <value>.
CONSTRAINT_RE = re.compile(r"^\s*(node|engine)\.[A-Za-z0-9_.-]+\s*(==|!=)\s*\S+\s*$")
_MEMORY_RE = re.compile(r"^\s*(\d+)\s*([kmgtKMGT]?)[bB]?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MEMORY_MIN = 6 * 1024**2  # what docker accepts at the least
MEMORY_MAX = 1024**4
CPU_MAX = 1024.0

Constraint = Annotated[str, Field(min_length=1, max_length=CONSTRAINT_MAX)]


def check_constraints(value: list[str]) -> list[str]:
    for item in value:
        if not CONSTRAINT_RE.match(item):
            raise ValueError(
                f"{item[:80]!r} is not a constraint such as node.labels.zone==eu "
                "(node.* or engine.* attribute, == or !=, a value)"
            )
    return [item.strip() for item in value]


def memory_bytes(value: Any) -> int:
    """``512M``, ``1G``, ``1048576``: bytes, at least 6 MiB (docker's floor)."""
    if isinstance(value, bool):
        raise ValueError("accepts bytes or a size such as 256M or 1G")
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY_RE.match(str(value))
        if match is None:
            raise ValueError("accepts bytes or a size such as 256M or 1G")
        size = int(match[1]) * _UNITS[match[2].lower()]
    if not MEMORY_MIN <= size <= MEMORY_MAX:
        raise ValueError(f"must be from {MEMORY_MIN} bytes (6M) to 1T")
    return size


Cpus = Annotated[float, Field(gt=0, le=CPU_MAX, description="cores, e.g. 0.5")]


class ResourcesIn(BaseModel):
    """CPU in cores, memory in bytes or as ``256M``/``1G``; a reservation is at most its limit."""

    model_config = ConfigDict(extra="forbid")

    cpu_limit: Cpus | None = None
    memory_limit: int | str | None = None
    cpu_reservation: Cpus | None = None
    memory_reservation: int | str | None = None

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
