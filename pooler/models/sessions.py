"""Sticky sessions: a conversation stays on one account while that account stays eligible."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, utc_now


class StickySession(Base):
    __tablename__ = "sticky_sessions"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Keyed hash of the client's session id; the raw id is never stored."""
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    updated_at: Mapped[utc_now]
