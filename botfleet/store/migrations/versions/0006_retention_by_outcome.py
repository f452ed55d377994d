"""Advanced retention: bots.status_at_deletion (how a bot ended, for retention by outcome),
bots.status_changed_at (since when its status holds, for failing bots), and results by bot,
in time order (result quotas, idle bots)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_at_deletion", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True)
        )
    # The best that is known of rows written before: their last update.
    op.execute("UPDATE bots SET status_changed_at = updated_at")
    op.create_index("ix_results_bot_recent", "results", ["bot_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_results_bot_recent", table_name="results")
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("status_at_deletion")
