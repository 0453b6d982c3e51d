"""Upstream (ChatGPT/Codex) accounts, their encrypted credentials and their quota evidence."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pooler.models.base import Base, int_pk, str64, str200, utc_now
from pooler.states import AccountState

if TYPE_CHECKING:
    from pooler.models.pools import PoolAssignment


class UpstreamAccount(Base):
    __tablename__ = "upstream_accounts"

    id: Mapped[int_pk]
    label: Mapped[str200]
    chatgpt_account_id: Mapped[str200] = mapped_column(unique=True)
    """The workspace/account id sent upstream as `ChatGPT-Account-Id` (not a secret, never a metric label)."""
    chatgpt_user_id: Mapped[str200 | None]
    email: Mapped[str200 | None]
    """Shown to operators only; never logged."""
    plan_type: Mapped[str64 | None]
    workspace_name: Mapped[str200 | None]
    state: Mapped[str] = mapped_column(String(32), default=AccountState.ACTIVE, index=True)
    state_reason: Mapped[str200 | None]
    """Safe, short code explaining the state (`refresh_token_reused`, `operator`, ...)."""
    state_changed_at: Mapped[utc_now]
    credential_epoch: Mapped[int] = mapped_column(default=1)
    """Bumped on every credential change; a refresher holding an older epoch must not write."""
    access_token_expires_at: Mapped[dt.datetime | None]
    last_refresh_at: Mapped[dt.datetime | None]
    refresh_requested_at: Mapped[dt.datetime | None]
    """Set when the gateway saw a 401: the scheduler refreshes on demand."""
    refresh_not_before: Mapped[dt.datetime | None]
    """Backoff (transient failure or a 429 Retry-After): no token call before this time."""
    refresh_failures: Mapped[int] = mapped_column(default=0)
    refresh_lease_owner: Mapped[str200 | None]
    refresh_lease_until: Mapped[dt.datetime | None]
    usage_poll_not_before: Mapped[dt.datetime | None]
    usage_poll_failures: Mapped[int] = mapped_column(default=0)
    demoted_until: Mapped[dt.datetime | None]
    """Short demotion after 5xx/connect failures seen by the gateway."""
    created_at: Mapped[utc_now]
    updated_at: Mapped[utc_now]
    deleted_at: Mapped[dt.datetime | None]

    secrets: Mapped[list[AccountSecret]] = relationship(back_populates="account", cascade="all, delete-orphan")
    assignments: Mapped[list[PoolAssignment]] = relationship(back_populates="account", cascade="all, delete-orphan")
    quota_windows: Mapped[list[QuotaWindow]] = relationship(back_populates="account", cascade="all, delete-orphan")


class AccountSecret(Base):
    """One encrypted credential (AES-256-GCM; AAD = account id + kind + key id)."""

    __tablename__ = "account_secrets"
    __table_args__ = (UniqueConstraint("account_id", "kind"),)

    id: Mapped[int_pk]
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes]
    ciphertext: Mapped[bytes]
    updated_at: Mapped[utc_now]

    account: Mapped[UpstreamAccount] = relationship(back_populates="secrets")


class QuotaWindow(Base):
    """Latest evidence about one rate-limit window of an account."""

    __tablename__ = "quota_windows"
    __table_args__ = (UniqueConstraint("account_id", "limit_family", "window_minutes"),)

    id: Mapped[int_pk]
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"), index=True)
    limit_family: Mapped[str] = mapped_column(String(64), default="codex")
    window_minutes: Mapped[int]
    """300 = the 5-hour window, 10080 = the weekly window."""
    used_percent: Mapped[float]
    resets_at: Mapped[dt.datetime | None]
    source: Mapped[str] = mapped_column(String(16))
    observed_at: Mapped[dt.datetime]

    account: Mapped[UpstreamAccount] = relationship(back_populates="quota_windows")


class AccountModelExclusion(Base):
    """A model one account cannot serve, learnt from the upstream: 429 `usage_not_included` (the plan lacks it;
    until an operator clears it) or a spent limit of a family other than `codex` (until its reset). Selection
    skips the account for that model only; other models still route there."""

    __tablename__ = "account_model_exclusions"
    __table_args__ = (UniqueConstraint("account_id", "model"),)

    id: Mapped[int_pk]
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"), index=True)
    model: Mapped[str200]
    reason: Mapped[str64]
    """The upstream's code: `usage_not_included`, or `usage_limit_reached:<family>`."""
    until: Mapped[dt.datetime | None]
    """None: until an operator clears it."""
    created_at: Mapped[utc_now]
