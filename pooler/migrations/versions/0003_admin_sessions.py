"""admin sessions (server-side, revocable) and single-use TOTP codes

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pooler.models.base

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_agent", sa.String(length=120), nullable=True),
        sa.Column("revoked_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pending_totp_key_id", sa.String(length=32), nullable=True),
        sa.Column("pending_totp_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("pending_totp_ciphertext", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_admin_sessions_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_sessions_token_hash")),
    )
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_sessions_operator_id"), ["operator_id"], unique=False)
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_sessions_operator_id"))
    op.drop_table("admin_sessions")
