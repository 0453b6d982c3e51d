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
    totp_last_step: Mapped[int | None]
    """The 30 s time step of the last TOTP code accepted: a code of this step or an earlier one is a replay."""
    disabled: Mapped[bool] = mapped_column(default=False)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    created_at: Mapped[utc_now]
    last_login_at: Mapped[dt.datetime | None]


class AdminSession(Base):
    """A signed-in admin browser. The cookie holds only a random opaque token; this row holds its keyed hash, so
    a session ends for every worker and replica the moment its row is revoked (logout, password or role change)
    or expires (idle / absolute limits: settings `admin_session_idle_minutes`, `admin_session_max_hours`)."""

    __tablename__ = "admin_sessions"

    id: Mapped[int_pk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """HMAC(pepper, "admin-session", token); the token itself is never stored."""
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    """Absolute end, fixed at sign-in."""
    user_agent: Mapped[str | None] = mapped_column(String(120))
    """A short summary of the browser (for the operator's own session list), never the full header."""
    revoked_at: Mapped[dt.datetime | None]
    pending_totp_key_id: Mapped[str | None] = mapped_column(String(32))
    pending_totp_nonce: Mapped[bytes | None]
    pending_totp_ciphertext: Mapped[bytes | None]
    """A TOTP seed being enrolled (sealed in the secret box) until a code proves the authenticator has it."""


class OperatorPool(Base):
    """Pools an operator with role `admin` may manage (owners and viewers ignore this)."""

    __tablename__ = "operator_pools"

    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
