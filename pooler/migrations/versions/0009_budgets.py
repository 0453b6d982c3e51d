"""budgets: per-key spend limits (tokens, USD) over calendar periods, each pool's time zone, key quota shares

Revision ID: 0009
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool_settings") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False))
    with op.batch_alter_table("pool_keys") as batch:
        batch.add_column(sa.Column("share_percent", sa.Double(), nullable=True))
        batch.add_column(sa.Column("share_team", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("share_pacing", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "key_budgets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("hard_limit", sa.Double(), nullable=True),
        sa.Column("soft_limit", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"], ["pool_keys.id"], name=op.f("fk_key_budgets_key_id_pool_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_budgets")),
        sa.UniqueConstraint("key_id", "period", "unit", name=op.f("uq_key_budgets_key_id_period_unit")),
    )
    op.create_index(op.f("ix_key_budgets_key_id"), "key_budgets", ["key_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_key_budgets_key_id"), table_name="key_budgets")
    op.drop_table("key_budgets")
    with op.batch_alter_table("pool_keys") as batch:
        batch.drop_column("share_pacing")
        batch.drop_column("share_team")
        batch.drop_column("share_percent")
    with op.batch_alter_table("pool_settings") as batch:
        batch.drop_column("time_zone")
