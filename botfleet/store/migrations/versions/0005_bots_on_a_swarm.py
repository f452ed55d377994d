"""Bots on a swarm: bots.node and bots.status_detail (where the current task runs, and why it is
pending or failed), bots.placement and bots.resources (what the bot was created with)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("status_detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("placement", JSONType, nullable=True))
        batch_op.add_column(sa.Column("resources", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.drop_column("resources")
        batch_op.drop_column("placement")
        batch_op.drop_column("status_detail")
        batch_op.drop_column("node")
