"""How a run or a stage ends early, and how its errors are told apart: the database's failures
(which the scheduler's breaker counts) from bugs here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from botfleet.constants import DEPENDENCY_DATABASE
from botfleet.errors import LockLost


class Interrupted(Exception):
    """A stop was requested (SIGTERM, a time limit): the run ends after the current batch."""


def is_database_error(exc: BaseException) -> bool:
    """The database failed (as opposed to a bug here): the scheduler's breaker counts these."""
    if isinstance(exc, DBAPIError | SATimeoutError | OSError | TimeoutError | LockLost):
        return True
    return type(exc).__module__.startswith("asyncpg")


def error_entry(stage: str, exc: BaseException) -> dict[str, Any]:
    """A report's error for ``stage``; a database failure says so (``dependency``)."""
    out: dict[str, Any] = {"stage": stage, "message": f"{type(exc).__name__}: {exc}"[:500]}
    if is_database_error(exc):
        out["dependency"] = DEPENDENCY_DATABASE
    return out
