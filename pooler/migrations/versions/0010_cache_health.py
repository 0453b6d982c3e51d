"""cache health: each request's conversation (session hash) and why it is not on its sticky account

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("session_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("switch_cause", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("switch_cause")
        batch.drop_column("session_hash")
