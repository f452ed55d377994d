"""A bot's history and the fleet page's order: bot_events (each soft delete and restore, written
in its transaction), cleanup_audit by resource (which records name a bot or its container), and
bots by (created_at, id) (the fleet page's keyset order)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bot_events",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("bot_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_events")),
    )
    op.create_index("ix_bot_events_bot", "bot_events", ["bot_id", "at"])
    op.create_index("ix_cleanup_audit_resource_id", "cleanup_audit", ["resource_id"])
    op.create_index("ix_bots_created_id", "bots", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_bots_created_id", table_name="bots")
    op.drop_index("ix_cleanup_audit_resource_id", table_name="cleanup_audit")
    op.drop_index("ix_bot_events_bot", table_name="bot_events")
    op.drop_table("bot_events")
