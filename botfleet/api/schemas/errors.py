"""The one error shape of every answer that is not a success (design: ``{"detail": …}``).

``detail`` is always one human line; a 422 adds ``errors``, one item per field it refuses, so a
script reads ``detail`` and a program reads ``errors`` — our own refusals (``InvalidInput``) and
FastAPI's request validation answer alike (``api/errors.py``).
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    field: str = Field(
        description="The refused field: a parameter (`limit`), a body field (`name`, "
        "`labels.team`, `0.data` in a list) or `body` for the whole body."
    )
    message: str = Field(description="What it accepts, in words.")


class Error(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"detail": "bot 6f1c1b1e-8a8e-4d0b-9a51-0d8f6c1b7d21 not found"},
                {
                    "detail": "limit: Input should be less than or equal to 1000",
                    "errors": [
                        {"field": "limit", "message": "Input should be less than or equal to 1000"}
                    ],
                },
            ]
        }
    )

    detail: str = Field(description="One line for a person; on a 422 it starts with the field.")
    errors: list[FieldError] = Field(
        default_factory=list,
        description="On a 422 only: every field refused, each with its message.",
    )


class CleanupBusy(Error):
    """409 of ``POST /admin/cleanup``: the run in the way, so a caller can wait for it."""

    run_id: uuid.UUID | None = Field(
        description="The running run; null in the instant before it is recorded."
    )


class Unready(Error):
    """503 of ``/readyz``: which dependency does not answer."""

    status: str = Field(examples=["unavailable"])
