"""File affinity: which account created an upstream file, so later references to it land on that account.

Only a keyed hash of (pool, file id) is stored (like sticky sessions); file bodies and names never are.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, utc_now


class FilePin(Base):
    __tablename__ = "file_pins"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    file_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    """HMAC(pepper, purpose "file", pool id + upstream file id); the raw id is never stored."""
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    created_at: Mapped[utc_now]
