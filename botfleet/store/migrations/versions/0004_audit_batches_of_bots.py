"""Audit records of bots by the batch: cleanup_audit.resource_count, snapshot as json

A purge batch of bots is now one audit record per engine and reason, listing its bots, each with
its own snapshot (cleanup/audit.py; readers still see one item per bot). ``resource_count`` says
how many resources a record covers (1 until now, except batches of results: their count). On
PostgreSQL the snapshot becomes ``json``: it is written once and read whole, and a batch's list
is aggregated as text where jsonb re-encodes every value; stored with lz4 where the server has it.
Downgrade turns every batch of bots back into one record per bot first: nothing is lost.
The type change rewrites cleanup_audit under its lock (how long: BENCHMARKS.md, "Figures behind
the code"); a run's detail waits for it meanwhile.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESULT_KINDS = "('results', 'orphaned_results')"


def upgrade() -> None:
    op.add_column(
        "cleanup_audit",
        sa.Column("resource_count", sa.Integer(), server_default="1", nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE cleanup_audit SET resource_count = (snapshot->>'count')::int"
            f" WHERE kind IN {RESULT_KINDS} AND jsonb_typeof(snapshot->'count') = 'number'"
        )
        op.alter_column(
            "cleanup_audit",
            "snapshot",
            type_=sa.JSON(),
            existing_type=postgresql.JSONB(astext_type=sa.Text()),
            postgresql_using="snapshot::json",
            existing_nullable=True,
        )
        lz4 = op.get_bind().scalar(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        )
        if lz4:  # a server built without lz4 keeps its default (pglz)
            op.execute("ALTER TABLE cleanup_audit ALTER COLUMN snapshot SET COMPRESSION lz4")
    else:
        op.execute(
            "UPDATE cleanup_audit SET resource_count = json_extract(snapshot, '$.count')"
            f" WHERE kind IN {RESULT_KINDS} AND json_type(snapshot, '$.count') = 'integer'"
        )


def downgrade() -> None:
    columns = "run_id, kind, resource_id, engine, reason, actor, snapshot, deleted_at"
    if op.get_bind().dialect.name == "postgresql":
        batches = "kind = 'bots' AND json_typeof(snapshot->'bots') = 'array'"
        op.execute(
            f"INSERT INTO cleanup_audit ({columns})"
            " SELECT a.run_id, a.kind, b.value->>'id', a.engine, a.reason, a.actor,"
            " (b.value::jsonb - 'id')::json, a.deleted_at"
            f" FROM cleanup_audit a, json_array_elements(a.snapshot->'bots')"
            f" WITH ORDINALITY b(value, n) WHERE a.{batches} ORDER BY a.id, b.n"
        )
        op.execute(f"DELETE FROM cleanup_audit WHERE {batches}")
        op.execute("ALTER TABLE cleanup_audit ALTER COLUMN snapshot SET COMPRESSION default")
        op.alter_column(
            "cleanup_audit",
            "snapshot",
            type_=postgresql.JSONB(astext_type=sa.Text()),
            existing_type=sa.JSON(),
            postgresql_using="snapshot::jsonb",
            existing_nullable=True,
        )
    else:
        batches = "kind = 'bots' AND json_type(snapshot, '$.bots') = 'array'"
        op.execute(
            f"INSERT INTO cleanup_audit ({columns})"
            " SELECT a.run_id, a.kind, json_extract(b.value, '$.id'), a.engine, a.reason,"
            " a.actor, json_remove(b.value, '$.id'), a.deleted_at"
            f" FROM cleanup_audit a, json_each(a.snapshot, '$.bots') b WHERE a.{batches}"
            " ORDER BY a.id, b.key"
        )
        op.execute(f"DELETE FROM cleanup_audit WHERE {batches}")
    with op.batch_alter_table("cleanup_audit", schema=None) as batch_op:
        batch_op.drop_column("resource_count")
