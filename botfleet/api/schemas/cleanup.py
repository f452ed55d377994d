"""The cleanup endpoints' answers, as the OpenAPI document declares them.

The service builds these as plain JSON (``cleanup/report.py``, ``run_history.py``,
``orphans.py``); the routes hand them on as they are and these models only describe them
(``responses=`` in ``routes/cleanup.py``), open to fields later issues add. Schemathesis'
``response_schema_conformance`` and the generated client's walkthrough hold the two together.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Trigger = Literal["schedule", "manual", "cli"]
RunStatus = Literal["running", "succeeded", "partial", "failed", "abandoned"]
Outcome = Literal[
    "planned", "done", "not_selected", "disabled", "failed", "partial", "refused", "interrupted"
]
_OPEN = ConfigDict(extra="allow")
RUN_ID = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d"
REPORT_EXAMPLE: dict[str, Any] = {
    "run_id": RUN_ID,
    "plan_id": RUN_ID,
    "dry_run": True,
    "trigger": "manual",
    "actor": "api:3f2a9c1b@127.0.0.1",
    "status": "succeeded",
    "started_at": "2026-11-26T09:30:00.000000+00:00",
    "finished_at": "2026-11-26T09:30:00.420000+00:00",
    "instance": "default",
    "resources": {
        "bots": {
            "found": 1,
            "deleted": 0,
            "sample": ["6f1c1b1e-8a8e-4d0b-9a51-0d8f6c1b7d21"],
            "skipped": [],
            "skipped_count": 0,
            "failed": 0,
            "outcome": "planned",
            "duration_seconds": 0.012,
            "lag_seconds": [],
        },
    },
    "errors": [],
}


class Skipped(BaseModel):
    model_config = _OPEN

    id: str
    reason: str
    engine: str | None = None


class ResourceEntry(BaseModel):
    """One kind of resource in a report: what the policies selected and what really went."""

    model_config = _OPEN

    found: int = Field(ge=0, description="What the policies select.")
    deleted: int = Field(ge=0, description="What was really removed (0 in a dry run).")
    sample: list[str] = Field(description="A few of the ids found.")
    skipped: list[Skipped] = Field([], description="Left alone on purpose, with the reason.")
    skipped_count: int = Field(0, ge=0, description="All that were skipped, listed or not.")
    failed: int = Field(0, ge=0)
    outcome: Outcome | None = None
    duration_seconds: float | None = None
    lag_seconds: list[float] = []
    bytes_reclaimed: int | None = Field(
        None,
        ge=0,
        description="Storage a real run recovered (absent in a dry run): containers' writable"
        " layers; SQLite: the pages the stage freed; PostgreSQL: the deleted rows' heap tuples,"
        " reusable after VACUUM. bots counts its results with it.",
    )
    store_bytes_before: int | None = Field(
        None, ge=0, description="Database kinds: the store's size before the stage."
    )
    store_bytes_after: int | None = Field(
        None, ge=0, description="Database kinds: after it (returned to the OS: the difference)."
    )


class RunError(BaseModel):
    model_config = _OPEN

    message: str
    stage: str | None = None
    engine: str | None = None


class CleanupReport(BaseModel):
    """A run's report (design.md): the plan of a dry run, or what a real run deleted."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [REPORT_EXAMPLE]})

    run_id: uuid.UUID
    plan_id: uuid.UUID | None = Field(
        description="Apply exactly this plan with `dry_run=false&plan_id=…`."
    )
    dry_run: bool
    trigger: Trigger
    actor: str | None = None
    status: Literal["succeeded", "partial", "failed"]
    started_at: datetime
    finished_at: datetime
    resources: dict[str, ResourceEntry] = Field(
        description="bots, bot_results, orphaned_results, containers (and results when result "
        "retention is on; services when bots run on a swarm)."
    )
    errors: list[RunError]


class CleanupStatus(BaseModel):
    """The cleanup service and its scheduler."""

    model_config = _OPEN

    enabled: bool
    dry_run: bool
    container_cleanup_enabled: bool
    retention_days: int
    result_retention_days: int | None
    interval_hours: float
    instance: str
    engines: list[str]
    running: uuid.UUID | None = Field(description="The run in progress, if any.")
    last_run: CleanupReport | None
    next_run_at: datetime | None
    next_run_reason: str | None = None
    mode: Literal["off", "dry_run", "active"]


class Orphan(BaseModel):
    model_config = _OPEN

    kind: str
    id: str
    eligible: bool = Field(description="Would the next run delete it?")
    reason: str
    age_seconds: float | None


class OrphanCount(BaseModel):
    model_config = _OPEN

    total: int = Field(ge=0)
    eligible: int = Field(ge=0)


class Orphans(BaseModel):
    """What is orphaned now, per kind, with what protects the rest."""

    model_config = _OPEN

    items: list[Orphan]
    total: int = Field(ge=0)
    next_cursor: str | None
    summary: dict[str, OrphanCount]
    now: datetime
    errors: list[RunError]


class RunSummary(BaseModel):
    model_config = _OPEN

    id: uuid.UUID
    trigger: Trigger
    actor: str | None
    dry_run: bool
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    plan_id: uuid.UUID | None
    found: dict[str, int]
    deleted: dict[str, int]
    bytes_reclaimed: dict[str, int] = Field(
        {}, description="Storage recovered per kind (a real run's kinds that report it)."
    )
    errors: int = Field(ge=0, description="How many errors the report lists.")


class RunList(BaseModel):
    items: list[RunSummary]
    total: int = Field(ge=0)
    next_cursor: str | None


class AuditItem(BaseModel):
    """One resource a real run deleted: what, why, who triggered it."""

    model_config = _OPEN

    kind: str
    resource_id: str
    engine: str | None
    reason: str
    actor: str | None
    deleted_at: datetime


class AuditPage(BaseModel):
    items: list[AuditItem]
    total: int = Field(ge=0)
    next_cursor: str | None


class RunDetail(RunSummary):
    """One run: its summary, report, stored plan and a page of its audit trail."""

    report: CleanupReport | None
    plan: dict[str, Any] | None
    audit: AuditPage


class Explanation(BaseModel):
    """Why: the rule that applies to a bot, and when each of its resources becomes due."""

    model_config = _OPEN

    bot_id: uuid.UUID
    name: str
    live: bool
    held: bool = Field(description="botfleet.hold=true: nothing of it is ever deleted.")
    rule: dict[str, Any] | None = Field(description="The first matching rule; null: defaults.")
    why: str
    bot: dict[str, Any] = Field(description="Its retention, and when it is purged if deleted.")
    results: dict[str, Any] = Field(description="Result retention, quota, floor and priority.")
    idle: dict[str, Any] | None = Field(
        description="When an idle or failing rule soft-deletes it; null: no such rule."
    )
