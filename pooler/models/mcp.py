"""MCP access: operator-owned bearer tokens (keyed hash only) and the per-operator gate."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, int_pk, str200, utc_now


class McpToken(Base):
    __tablename__ = "mcp_tokens"

    id: Mapped[int_pk]
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    label: Mapped[str200]
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """Public part of the token (`mcp_ab12cd34`), safe to show and log."""
    token_hash: Mapped[str] = mapped_column(String(64))
    """KeyedHasher purpose "mcp-token", hex; the raw token is shown once at creation."""
    created_at: Mapped[utc_now]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class McpOperatorGate(Base):
    """Per-operator MCP switch; no row means off (a token alone never grants access)."""

    __tablename__ = "mcp_operator_gates"

    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[utc_now]
