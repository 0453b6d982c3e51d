"""concurrent-stream cap per account: default 8, and the ext_proc's in-flight report for the admin

Revision ID: 0004
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pooler.models.base

revision = "0004"
down_revision = "0010"
branch_labels = None
depends_on = None

DEFAULT_MAX_STREAMS_PER_ACCOUNT = 8
"""Frozen copy of pooler.models.pools.DEFAULT_MAX_STREAMS_PER_ACCOUNT at the time of this migration."""


def upgrade() -> None:
    # Pools that had no cap (the old default) get the new default: an uncapped least-used pool sent every
    # concurrent stream to one account. An operator clears the field again for "unlimited".
    op.execute(
        sa.text(
            "UPDATE pool_settings SET max_concurrency_per_account = :cap WHERE max_concurrency_per_account IS NULL"
        ).bindparams(cap=DEFAULT_MAX_STREAMS_PER_ACCOUNT)
    )
    op.create_table(
        "inflight_streams",
        sa.Column("replica", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("streams", sa.Integer(), nullable=False),
        sa.Column("reported_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_inflight_streams_account_id_upstream_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("replica", "account_id", name=op.f("pk_inflight_streams")),
    )
    op.create_index(op.f("ix_inflight_streams_reported_at"), "inflight_streams", ["reported_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_inflight_streams_reported_at"), table_name="inflight_streams")
    op.drop_table("inflight_streams")
    # The caps set by upgrade() stay: they cannot be told apart from caps an operator chose.
