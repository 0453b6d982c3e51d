"""Sticky sessions: a conversation stays on one account while that account stays eligible."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, int_pk, utc_now


class StickySession(Base):
    __tablename__ = "sticky_sessions"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Keyed hash of the client's session id; the raw id is never stored."""
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    updated_at: Mapped[utc_now]


class KeyRateHit(Base):
    """One admitted request of a key with a requests/min limit, when ext_proc replicas share limits
    (POOLER_EXTPROC_SHARED): the sliding 60 s window is counted here, serialised per key by a row lock on the
    key. Rows older than the window are deleted by the same transaction, so a key holds at most its limit."""

    __tablename__ = "key_rate_hits"

    id: Mapped[int_pk]
    key_id: Mapped[int] = mapped_column(ForeignKey("pool_keys.id", ondelete="CASCADE"), index=True)
    at: Mapped[float] = mapped_column(Float)
    """Unix seconds."""
