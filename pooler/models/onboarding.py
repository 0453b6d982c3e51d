"""OAuth onboarding: pending link/relink/invite flows (secrets sealed) and pool invites (token stored hashed)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, int_pk, str64, str200, utc_now


class OAuthFlow(Base):
    """One OAuth attempt (browser PKCE or device code). Only metadata is in clear.

    The PKCE verifier, the state, and the device ids live in one sealed JSON blob (secret box subject
    `oauth_flow:<id>`). The authorization code, the callback URL and the tokens are never stored here at all.
    """

    __tablename__ = "oauth_flows"

    id: Mapped[int_pk]
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    """Who started it; None for invite flows (the invitee is anonymous)."""
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("oauth_invites.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    """link, relink or invite."""
    method: Mapped[str] = mapped_column(String(16))
    """browser or device."""
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="SET NULL"))
    """The account being relinked, or (after success) the account that was linked."""
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    """pending, completed, failed, expired."""
    error_code: Mapped[str64 | None]
    """Safe code of the failure (`stale_flow`, `token_exchange_failed`, ...)."""
    binding_hash: Mapped[str64]
    """Keyed hash of a nonce kept in the starting browser session: only that session may complete the flow."""
    poll_interval_seconds: Mapped[int] = mapped_column(default=5)
    next_poll_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes]
    ciphertext: Mapped[bytes]
    created_at: Mapped[utc_now]
    finished_at: Mapped[dt.datetime | None]


class OAuthInvite(Base):
    """A single-use invitation to link one account into a pool via the device-code flow."""

    __tablename__ = "oauth_invites"

    id: Mapped[int_pk]
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str64] = mapped_column(unique=True)
    """KeyedHasher purpose `invite`; the raw token is shown once to the operator and never stored."""
    label: Mapped[str200]
    """Who the invite is for (operator's note, shown in the list; never shown to the invitee)."""
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    """pending, accepted, revoked, expired."""
    created_by: Mapped[str200 | None]
    created_at: Mapped[utc_now]
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    account_id: Mapped[int | None] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="SET NULL"))
    """The account the invitee linked."""
