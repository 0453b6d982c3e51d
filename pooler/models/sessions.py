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


class InflightStreams(Base):
    """Streams in flight per account as one ext_proc replica last reported them (every few seconds), for the
    admin's account cards. The cap itself is enforced in the ext_proc's memory; this is only its display.
    A replica replaces its own rows on each report; rows not reported for a while are of a stopped replica
    and are ignored (and eventually deleted) by readers."""

    __tablename__ = "inflight_streams"

    replica: Mapped[str] = mapped_column(String(200), primary_key=True)
    """host:pid of the reporting ext_proc."""
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"), primary_key=True)
    streams: Mapped[int]
    reported_at: Mapped[dt.datetime] = mapped_column(index=True)
