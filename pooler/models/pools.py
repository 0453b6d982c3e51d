"""Pools, their routing settings, and which upstream accounts serve them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pooler.models.base import Base, int_pk, str64, str200, utc_now
from pooler.states import AssignmentStatus, PoolStatus, Strategy

if TYPE_CHECKING:
    from pooler.models.accounts import UpstreamAccount


class Pool(Base):
    __tablename__ = "pools"

    id: Mapped[int_pk]
    name: Mapped[str64] = mapped_column(unique=True)
    """Slug used in the CLI and URLs (`team-a`)."""
    label: Mapped[str200]
    status: Mapped[str] = mapped_column(String(16), default=PoolStatus.ACTIVE)
    created_at: Mapped[utc_now]
    updated_at: Mapped[utc_now]

    settings: Mapped[PoolSettings] = relationship(
        back_populates="pool", uselist=False, cascade="all, delete-orphan", lazy="joined"
    )
    assignments: Mapped[list[PoolAssignment]] = relationship(back_populates="pool", cascade="all, delete-orphan")


DEFAULT_MAX_STREAMS_PER_ACCOUNT = 8
"""New pools' concurrent-stream cap per account (peer gateways ship the same figure)."""


class PoolSettings(Base):
    """Routing policy of one pool (1:1 with Pool)."""

    __tablename__ = "pool_settings"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(32), default=Strategy.LEAST_USED)
    sticky_ttl_seconds: Mapped[int] = mapped_column(default=3600)
    max_attempts: Mapped[int] = mapped_column(default=3)
    """Upstream attempts per request, the first included (Envoy retries = max_attempts - 1)."""
    primary_cap_percent: Mapped[float] = mapped_column(default=100.0)
    """An account whose 5-hour window is at or above this percent is not eligible (reserve capacity)."""
    secondary_cap_percent: Mapped[float] = mapped_column(default=100.0)
    """Same for the weekly window."""
    allowed_models: Mapped[list[str] | None] = mapped_column(default=None)
    """None = every model the upstream serves."""
    max_concurrency_per_account: Mapped[int | None] = mapped_column(default=DEFAULT_MAX_STREAMS_PER_ACCOUNT)
    """Streams one account serves at once for this pool's gateway (None = no cap): a burst of concurrent streams
    on one account is what earns upstream `rate_limit_exceeded`."""
    image_generation_enabled: Mapped[bool] = mapped_column(default=False)
    """Image generation/edit routes (and responses asking for the image_generation tool) are allowed."""
    pooled_rate_limits: Mapped[bool] = mapped_column(default=False)
    """Clients see the pool's aggregate in x-codex-* quota headers instead of one account's."""
    time_zone: Mapped[str64] = mapped_column(default="UTC", server_default="UTC")
    """IANA zone of the pool's calendar: where the days, weeks and months of key budgets start."""
    updated_at: Mapped[utc_now]

    pool: Mapped[Pool] = relationship(back_populates="settings")


class PoolAssignment(Base):
    __tablename__ = "pool_assignments"
    __table_args__ = (UniqueConstraint("pool_id", "account_id"),)

    id: Mapped[int_pk]
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("upstream_accounts.id", ondelete="CASCADE"), index=True)
    priority: Mapped[int] = mapped_column(default=100)
    """Lower first; used by the primary-first strategy."""
    status: Mapped[str] = mapped_column(String(16), default=AssignmentStatus.ACTIVE)
    created_at: Mapped[utc_now]

    pool: Mapped[Pool] = relationship(back_populates="assignments")
    account: Mapped[UpstreamAccount] = relationship(back_populates="assignments")


__all__ = ["Pool", "PoolAssignment", "PoolSettings"]
