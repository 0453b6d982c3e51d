"""attention: incident acknowledgement and silence, run-now requests for scheduler jobs

Revision ID: 0007
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pooler.models.base

revision = "0007"
down_revision = "0003"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, pooler.models.base.UTCDateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("alert_incidents") as batch:
        batch.add_column(_when("acknowledged_at"))
        batch.add_column(sa.Column("acknowledged_by", sa.String(length=200), nullable=True))
        batch.add_column(_when("silenced_until"))
        batch.add_column(sa.Column("silenced_by", sa.String(length=200), nullable=True))
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("requested_by", sa.String(length=200), nullable=True))
    op.create_table(
        "job_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        _when("picked_at"),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["job_runs.id"], name=op.f("fk_job_requests_run_id_job_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_requests")),
    )
    op.create_index(op.f("ix_job_requests_picked_at"), "job_requests", ["picked_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_job_requests_picked_at"), table_name="job_requests")
    op.drop_table("job_requests")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("requested_by")
    with op.batch_alter_table("alert_incidents") as batch:
        batch.drop_column("silenced_by")
        batch.drop_column("silenced_until")
        batch.drop_column("acknowledged_by")
        batch.drop_column("acknowledged_at")
