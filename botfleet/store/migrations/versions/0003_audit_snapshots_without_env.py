"""Purged bots' audit snapshots lose their env: secrets must not outlive the bot

Until this revision a purged bot's audit snapshot held its whole row, env included, and the run
detail (GET /api/cleanup/runs/{id}) showed it — while the bots API never shows a bot's env. New
snapshots leave env out (cleanup/purge_bots.py); this removes it from the ones already written.
Not reversible: what was removed is gone, and downgrade leaves the records as they are.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE cleanup_audit SET snapshot = snapshot - 'env'"
            " WHERE kind = 'bots' AND snapshot ? 'env'"
        )
    else:
        op.execute(
            "UPDATE cleanup_audit SET snapshot = json_remove(snapshot, '$.env')"
            " WHERE kind = 'bots' AND json_type(snapshot, '$.env') IS NOT NULL"
        )


def downgrade() -> None:
    pass
