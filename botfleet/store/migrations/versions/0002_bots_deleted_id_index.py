"""ix_bots_deleted_id, ix_bots_held: the cleanup plan's counts read indexes, not the heap

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bots_deleted_id",
            ["id"],
            unique=False,
            postgresql_include=["deleted_at"],
            # Held bots are never purged: leaving them out lets a count of the purgeable read
            # the index alone (the predicate implies the query's NOT held).
            postgresql_where=sa.text(
                "deleted_at IS NOT NULL"
                " AND NOT (lower(coalesce(labels->>'botfleet.hold', '')) = 'true')"
            ),
            sqlite_where=sa.text("deleted_at IS NOT NULL"),
        )
        # Soft-deleted bots on hold (few): counted and listed without reading every label.
        batch_op.create_index(
            "ix_bots_held",
            ["deleted_at"],
            unique=False,
            postgresql_where=sa.text(
                "deleted_at IS NOT NULL AND lower(coalesce(labels->>'botfleet.hold', '')) = 'true'"
            ),
            sqlite_where=sa.text("deleted_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.drop_index("ix_bots_held")
        batch_op.drop_index("ix_bots_deleted_id")
