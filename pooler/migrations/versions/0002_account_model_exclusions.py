"""account model exclusions: models an account cannot serve, learnt from the upstream

Revision ID: 0002
Revises: 0004
Create Date: 2026-12-07 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pooler.models.base

revision = "0002"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_model_exclusions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("until", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_account_model_exclusions_account_id_upstream_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_model_exclusions")),
        sa.UniqueConstraint("account_id", "model", name=op.f("uq_account_model_exclusions_account_id_model")),
    )
    with op.batch_alter_table("account_model_exclusions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_model_exclusions_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_model_exclusions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_model_exclusions_account_id"))
    op.drop_table("account_model_exclusions")
