"""SQLAlchemy 2 models: bots, results, cleanup runs and the deletion audit trail.

Column names are a contract (design.md). ``results.bot_id`` deliberately has no foreign key:
an orphaned result must be representable, and purging it is the cleanup service's job.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from botfleet.constants import LABEL_HOLD

# https://alembic.sqlalchemy.org/en/latest/naming.html
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (cheaper to_jsonb snapshots, indexable), JSON elsewhere.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")
# 64-bit ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY to alias the rowid.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The hold label as PostgreSQL spells it (cleanup/predicates.py writes the same expression, so
# the planner can prove that a purge condition implies ix_bots_deleted_id's predicate).
HELD_SQL = f"lower(coalesce(labels->>'{LABEL_HOLD}', '')) = 'true'"


class Bot(Base):
    __tablename__ = "bots"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    image: Mapped[str] = mapped_column(String(255))
    command: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    env: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    container_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    engine: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # On a swarm: the node of the current task, and why that task is pending or failed.
    node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Swarm constraints and CPU/memory limits and reservations, as created (swarm runtime).
    placement: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # How the bot ended: its status when it was soft-deleted (retention by outcome); NULL while
    # it lives. And since when its status holds (a policy's failing_after_days).
    status_at_deletion: Mapped[str | None] = mapped_column(String(20), nullable=True)
    status_changed_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, nullable=True, default=utcnow
    )

    __table_args__ = (
        # The cleanup's selection: only soft-deleted rows, ordered by age.
        Index(
            "ix_bots_deleted_at",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
        # A name is unique among live bots only; a deleted bot's name can be reused.
        Index(
            "uq_bots_name_live",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index("ix_bots_status", "status"),
        # The fleet page's order, newest first, and its keyset cursor (bot_queries.list_bots).
        Index("ix_bots_created_id", "created_at", "id"),
        # The cleanup's counts: soft-deleted bots in id order, with deleted_at, read index-only
        # in a merge against ix_results_bot_id (cleanup/result_slices.py).
        Index(
            "ix_bots_deleted_id",
            "id",
            postgresql_include=["deleted_at"],
            postgresql_where=text(f"deleted_at IS NOT NULL AND NOT ({HELD_SQL})"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
        # Soft-deleted bots on hold (few): the plan reports them without reading every label.
        Index(
            "ix_bots_held",
            "deleted_at",
            postgresql_where=text(f"deleted_at IS NOT NULL AND {HELD_SQL}"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
    )


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    bot_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    data: Mapped[Any] = mapped_column(JSONType, nullable=True)

    __table_args__ = (
        # A bot's results in time order (read backwards: newest first): its quota's boundary,
        # and whether it posted lately.
        Index("ix_results_bot_recent", "bot_id", "created_at", "id"),
    )


class CleanupRun(Base):
    __tablename__ = "cleanup_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    trigger: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    dry_run: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The replica that ran it (host:pid), so an abandoned run can be traced.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # For a dry run: the plan that `POST /admin/cleanup?plan_id=` can execute later.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


class CleanupAudit(Base):
    """What a real run deleted: what, why, which run, who triggered it. One row per container,
    per batch of bots (per engine and reason) and per batch of results (cleanup/audit.py)."""

    __tablename__ = "cleanup_audit"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Indexed: a bot's history asks which records name its container, or the bot itself.
    resource_id: Mapped[str] = mapped_column(String(128), index=True)
    engine: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    # json, not jsonb, on PostgreSQL: written once, read whole, never queried into, and a batch's
    # snapshot is aggregated as text (jsonb re-encodes every value; revision 0004).
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON(), nullable=True)
    # How many resources the record covers: 1, or the size of a batch (cleanup/audit.py).
    resource_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BotEvent(Base):
    """A soft delete or a restore of a bot, written in the transaction that made it: the row
    keeps only its latest ``deleted_at``, which a restore clears (bot_history.py). Purged with
    the bot."""

    __tablename__ = "bot_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    bot_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(20))  # deleted | restored
    # A delete: the status the bot ended with (its status_at_deletion then).
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    # The cleanup run that did it (an idle rule's soft delete); NULL: the API did.
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)

    __table_args__ = (Index("ix_bot_events_bot", "bot_id", "at"),)


class NotifyOutbox(Base):
    """One event for one receiver (NOTIFY_WEBHOOK_URLS), written in the transaction of what it
    reports and delivered at least once by the sender (botfleet/notify/sender.py).
    ``dedupe_key`` makes an event once-only per receiver (a bot's purge warning)."""

    __tablename__ = "notify_outbox"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # the exact bytes signed and sent
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("uq_notify_outbox_dedupe", "dedupe_key", "url", unique=True),
        # The sender's queue: pending entries by when they may go next.
        Index("ix_notify_outbox_due", "state", "next_attempt_at"),
    )
