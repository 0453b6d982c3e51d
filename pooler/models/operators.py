"""Admin operators, their roles and the pools an `admin` may manage."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, int_pk, str200, utc_now
from pooler.states import OperatorRole


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int_pk]
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str200 | None]
    password_hash: Mapped[str] = mapped_column(String(255))
    """argon2id hash."""
    role: Mapped[str] = mapped_column(String(16), default=OperatorRole.VIEWER)
    totp_key_id: Mapped[str | None] = mapped_column(String(32))
    totp_nonce: Mapped[bytes | None]
    totp_ciphertext: Mapped[bytes | None]
    """TOTP seed sealed in the secret box; all three None when TOTP is off."""
    disabled: Mapped[bool] = mapped_column(default=False)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    created_at: Mapped[utc_now]
    last_login_at: Mapped[dt.datetime | None]


class OperatorPool(Base):
    """Pools an operator with role `admin` may manage (owners and viewers ignore this)."""

    __tablename__ = "operator_pools"

    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
