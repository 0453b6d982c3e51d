"""Metadata-only request logs, their upstream attempts, and the audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pooler.models.base import Base, int_pk, str64, str200, utc_now


class RequestLog(Base):
    __tablename__ = "request_logs"
    __table_args__ = (
        Index("ix_request_logs_pool_time", "pool_id", "created_at"),
        Index("ix_request_logs_account_time", "account_id", "created_at"),
    )

    id: Mapped[int_pk]
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
    """When the request started (from Envoy's access log)."""
    request_id: Mapped[str64 | None] = mapped_column(unique=True)
    """Envoy's x-request-id: makes access-log ingestion idempotent."""
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="SET NULL"))
    key_prefix: Mapped[str | None] = mapped_column(String(16), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="SET NULL"))
    """The account that produced the final response."""
    route_family: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    model: Mapped[str64 | None]
    status_code: Mapped[int]
    attempt_count: Mapped[int] = mapped_column(default=1)
    error_code: Mapped[str64 | None]
    ttfb_ms: Mapped[float | None]
    duration_ms: Mapped[float | None]
    input_tokens: Mapped[int | None]
    cached_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    reasoning_tokens: Mapped[int | None]
    total_tokens: Mapped[int | None]
    session_hash: Mapped[str64 | None]
    """The keyed hash of the conversation's session (as in sticky_sessions; never the raw id)."""
    switch_cause: Mapped[str | None] = mapped_column(String(32))
    """Why the conversation is not on its sticky account (pooler.gateway.switch_causes); NULL: it is."""

    attempts: Mapped[list[RequestAttempt]] = relationship(
        back_populates="request_log", cascade="all, delete-orphan", order_by="RequestAttempt.attempt_number"
    )


class RequestAttempt(Base):
    __tablename__ = "request_attempts"

    id: Mapped[int_pk]
    request_log_id: Mapped[int] = mapped_column(ForeignKey("request_logs.id", ondelete="CASCADE"), index=True)
    attempt_number: Mapped[int]
    account_id: Mapped[int | None] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="SET NULL"))
    status_code: Mapped[int | None]
    """Status of this attempt when known (the last attempt's is the request's)."""
    outcome: Mapped[str] = mapped_column(String(32))
    """`served`, `failed_over`, ..."""
    error_code: Mapped[str | None] = mapped_column(String(64))
    """The code the attempt's error answer or failure event named (a safe token), when read."""

    request_log: Mapped[RequestLog] = relationship(back_populates="attempts")


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int_pk]
    created_at: Mapped[utc_now] = mapped_column(index=True)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_label: Mapped[str200 | None]
    action: Mapped[str64]
    """Dotted verb: `pool.create`, `account.import`, `account.state_change`, `key.revoke`, ..."""
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str64 | None]
    target_label: Mapped[str200 | None]
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    details: Mapped[dict[str, Any] | None]
    """Metadata only (old/new state, counts); never secrets or request content."""
