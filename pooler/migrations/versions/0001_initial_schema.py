"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 04:57:47.537862
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pooler.models.base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_label", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("target_label", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_created_at"), ["created_at"], unique=False)

    op.create_table(
        "data_versions",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_data_versions")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("slot", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("job_id", "slot", name=op.f("uq_job_runs_job_id_slot")),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("totp_key_id", sa.String(length=32), nullable=True),
        sa.Column("totp_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("totp_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("last_login_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("username", name=op.f("uq_operators_username")),
    )
    op.create_table(
        "pools",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_pools_name")),
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_settings")),
    )
    op.create_table(
        "upstream_accounts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("chatgpt_account_id", sa.String(length=200), nullable=False),
        sa.Column("chatgpt_user_id", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("plan_type", sa.String(length=64), nullable=True),
        sa.Column("workspace_name", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_reason", sa.String(length=200), nullable=True),
        sa.Column(
            "state_changed_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("credential_epoch", sa.Integer(), nullable=False),
        sa.Column("access_token_expires_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_refresh_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refresh_requested_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refresh_not_before", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refresh_failures", sa.Integer(), nullable=False),
        sa.Column("refresh_lease_owner", sa.String(length=200), nullable=True),
        sa.Column("refresh_lease_until", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("usage_poll_not_before", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("usage_poll_failures", sa.Integer(), nullable=False),
        sa.Column("demoted_until", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("deleted_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_accounts")),
        sa.UniqueConstraint("chatgpt_account_id", name=op.f("uq_upstream_accounts_chatgpt_account_id")),
    )
    with op.batch_alter_table("upstream_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upstream_accounts_state"), ["state"], unique=False)

    op.create_table(
        "account_secrets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_account_secrets_account_id_upstream_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_secrets")),
        sa.UniqueConstraint("account_id", "kind", name=op.f("uq_account_secrets_account_id_kind")),
    )
    with op.batch_alter_table("account_secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_secrets_account_id"), ["account_id"], unique=False)

    op.create_table(
        "operator_pools",
        sa.Column("operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_pools_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_operator_pools_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("operator_id", "pool_id", name=op.f("pk_operator_pools")),
    )
    op.create_table(
        "pool_assignments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_pool_assignments_account_id_upstream_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_pool_assignments_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pool_assignments")),
        sa.UniqueConstraint("pool_id", "account_id", name=op.f("uq_pool_assignments_pool_id_account_id")),
    )
    with op.batch_alter_table("pool_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pool_assignments_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pool_assignments_pool_id"), ["pool_id"], unique=False)

    op.create_table(
        "pool_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "allowed_models",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.Integer(), nullable=True),
        sa.Column(
            "ip_allowlist",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("hide_upstream_quota", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("rotated_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_pool_keys_pool_id_pools"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pool_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_pool_keys_prefix")),
    )
    with op.batch_alter_table("pool_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pool_keys_pool_id"), ["pool_id"], unique=False)

    op.create_table(
        "pool_settings",
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("sticky_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("primary_cap_percent", sa.Double(), nullable=False),
        sa.Column("secondary_cap_percent", sa.Double(), nullable=False),
        sa.Column(
            "allowed_models",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("max_concurrency_per_account", sa.Integer(), nullable=True),
        sa.Column("image_generation_enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("pooled_rate_limits", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_pool_settings_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pool_id", name=op.f("pk_pool_settings")),
    )
    op.create_table(
        "quota_windows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("limit_family", sa.String(length=64), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("used_percent", sa.Double(), nullable=False),
        sa.Column("resets_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("observed_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_quota_windows_account_id_upstream_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_windows")),
        sa.UniqueConstraint(
            "account_id",
            "limit_family",
            "window_minutes",
            name=op.f("uq_quota_windows_account_id_limit_family_window_minutes"),
        ),
    )
    with op.batch_alter_table("quota_windows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quota_windows_account_id"), ["account_id"], unique=False)

    op.create_table(
        "request_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("created_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("key_prefix", sa.String(length=16), nullable=True),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("route_family", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("ttfb_ms", sa.Double(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_request_logs_account_id_upstream_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_request_logs_pool_id_pools"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_logs")),
        sa.UniqueConstraint("request_id", name=op.f("uq_request_logs_request_id")),
    )
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.create_index("ix_request_logs_account_time", ["account_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_request_logs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_request_logs_key_prefix"), ["key_prefix"], unique=False)
        batch_op.create_index("ix_request_logs_pool_time", ["pool_id", "created_at"], unique=False)

    op.create_table(
        "sticky_sessions",
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("expires_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_sticky_sessions_account_id_upstream_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_sticky_sessions_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pool_id", "session_hash", name=op.f("pk_sticky_sessions")),
    )
    with op.batch_alter_table("sticky_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sticky_sessions_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "request_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("request_log_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_request_attempts_account_id_upstream_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["request_log_id"],
            ["request_logs.id"],
            name=op.f("fk_request_attempts_request_log_id_request_logs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_attempts")),
    )
    with op.batch_alter_table("request_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_attempts_request_log_id"), ["request_log_id"], unique=False)

    op.bulk_insert(
        sa.table("data_versions", sa.column("name", sa.String), sa.column("version", sa.Integer)),
        [{"name": "routing", "version": 0}],
    )

    op.create_table(
        "oauth_invites",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("expires_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_oauth_invites_account_id_upstream_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_oauth_invites_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_invites")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_oauth_invites_token_hash")),
    )
    with op.batch_alter_table("oauth_invites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oauth_invites_pool_id"), ["pool_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oauth_invites_status"), ["status"], unique=False)

    op.create_table(
        "oauth_flows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("invite_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("next_poll_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("finished_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_oauth_flows_account_id_upstream_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invite_id"], ["oauth_invites.id"], name=op.f("fk_oauth_flows_invite_id_oauth_invites"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_oauth_flows_operator_id_operators"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_oauth_flows_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_flows")),
    )
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oauth_flows_invite_id"), ["invite_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oauth_flows_operator_id"), ["operator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oauth_flows_pool_id"), ["pool_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oauth_flows_status"), ["status"], unique=False)

    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("opened_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("clear_since", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_incidents")),
    )
    with op.batch_alter_table("alert_incidents", schema=None) as batch_op:
        batch_op.create_index("ix_alert_incidents_rule_subject_status", ["rule", "subject", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_incidents_status"), ["status"], unique=False)

    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("delivered_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["alert_incidents.id"],
            name=op.f("fk_alert_deliveries_incident_id_alert_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_deliveries_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_alert_deliveries_status_next", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "mcp_operator_gates",
        sa.Column("operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_mcp_operator_gates_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operator_id", name=op.f("pk_mcp_operator_gates")),
    )
    op.create_table(
        "mcp_tokens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("last_used_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", pooler.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_mcp_tokens_operator_id_operators"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_tokens")),
        sa.UniqueConstraint("prefix", name=op.f("uq_mcp_tokens_prefix")),
    )
    with op.batch_alter_table("mcp_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mcp_tokens_operator_id"), ["operator_id"], unique=False)

    # File affinity: file id hash -> the account that created the file.
    op.create_table(
        "file_pins",
        sa.Column("pool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("expires_at", pooler.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            pooler.models.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["upstream_accounts.id"],
            name=op.f("fk_file_pins_account_id_upstream_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_file_pins_pool_id_pools"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pool_id", "file_hash", name=op.f("pk_file_pins")),
    )
    with op.batch_alter_table("file_pins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_file_pins_expires_at"), ["expires_at"], unique=False)

    # Shared requests/min windows of ext_proc replicas (pooler.ratelimit_shared).
    op.create_table(
        "key_rate_hits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["pool_keys.id"], name=op.f("fk_key_rate_hits_key_id_pool_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_rate_hits")),
    )
    with op.batch_alter_table("key_rate_hits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_rate_hits_key_id"), ["key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("key_rate_hits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_rate_hits_key_id"))
    op.drop_table("key_rate_hits")
    with op.batch_alter_table("file_pins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_file_pins_expires_at"))
    op.drop_table("file_pins")
    # Alerts and MCP (no other table references these, so they go first).
    with op.batch_alter_table("mcp_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mcp_tokens_operator_id"))
    op.drop_table("mcp_tokens")
    op.drop_table("mcp_operator_gates")
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_deliveries_status_next")
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_incident_id"))
    op.drop_table("alert_deliveries")
    with op.batch_alter_table("alert_incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_incidents_status"))
        batch_op.drop_index("ix_alert_incidents_rule_subject_status")
    op.drop_table("alert_incidents")
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_flows_status"))
        batch_op.drop_index(batch_op.f("ix_oauth_flows_pool_id"))
        batch_op.drop_index(batch_op.f("ix_oauth_flows_operator_id"))
        batch_op.drop_index(batch_op.f("ix_oauth_flows_invite_id"))

    op.drop_table("oauth_flows")
    with op.batch_alter_table("oauth_invites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_invites_status"))
        batch_op.drop_index(batch_op.f("ix_oauth_invites_pool_id"))

    op.drop_table("oauth_invites")
    with op.batch_alter_table("request_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_attempts_request_log_id"))

    op.drop_table("request_attempts")
    with op.batch_alter_table("sticky_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sticky_sessions_expires_at"))

    op.drop_table("sticky_sessions")
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_request_logs_pool_time")
        batch_op.drop_index(batch_op.f("ix_request_logs_key_prefix"))
        batch_op.drop_index(batch_op.f("ix_request_logs_created_at"))
        batch_op.drop_index("ix_request_logs_account_time")

    op.drop_table("request_logs")
    with op.batch_alter_table("quota_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quota_windows_account_id"))

    op.drop_table("quota_windows")
    op.drop_table("pool_settings")
    with op.batch_alter_table("pool_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pool_keys_pool_id"))

    op.drop_table("pool_keys")
    with op.batch_alter_table("pool_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pool_assignments_pool_id"))
        batch_op.drop_index(batch_op.f("ix_pool_assignments_account_id"))

    op.drop_table("pool_assignments")
    op.drop_table("operator_pools")
    with op.batch_alter_table("account_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_secrets_account_id"))

    op.drop_table("account_secrets")
    with op.batch_alter_table("upstream_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upstream_accounts_state"))

    op.drop_table("upstream_accounts")
    op.drop_table("settings")
    op.drop_table("pools")
    op.drop_table("operators")
    op.drop_table("job_runs")
    op.drop_table("data_versions")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_created_at"))

    op.drop_table("audit_events")
