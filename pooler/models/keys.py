"""Pool API keys: only a public prefix and a keyed hash are stored."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pooler.models.base import Base, int_pk, str64, str200, utc_now
from pooler.models.pools import Pool
from pooler.states import KeyStatus


class PoolKey(Base):
    __tablename__ = "pool_keys"

    id: Mapped[int_pk]
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), index=True)
    label: Mapped[str200]
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """Public part of the key (`cpk_ab12cd34`), safe to log and show."""
    key_hash: Mapped[str] = mapped_column(String(64))
    """HMAC-SHA256(pepper, raw key), hex."""
    status: Mapped[str] = mapped_column(String(16), default=KeyStatus.ACTIVE)
    expires_at: Mapped[dt.datetime | None]
    allowed_models: Mapped[list[str] | None] = mapped_column(default=None)
    requests_per_minute: Mapped[int | None]
    tokens_per_day: Mapped[int | None]
    ip_allowlist: Mapped[list[str] | None] = mapped_column(default=None)
    """Client IPs/CIDRs this key may be used from (the address Envoy derived, trusted proxies honoured)."""
    hide_upstream_quota: Mapped[bool] = mapped_column(default=False)
    """Key holders see this key's own limits in quota headers and usage, never the upstream's."""
    share_percent: Mapped[float | None]
    """Most of the pool's 5-hour and weekly capacity this key (or its team) may use, in percent (pooler.share)."""
    share_team: Mapped[str64 | None]
    """Keys of a pool with the same team are measured together against their share."""
    share_pacing: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Spread the weekly share evenly over the days of the pool's weekly window."""
    created_at: Mapped[utc_now]
    rotated_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]

    pool: Mapped[Pool] = relationship()
    budgets: Mapped[list[KeyBudget]] = relationship(
        back_populates="key", cascade="all, delete-orphan", order_by="KeyBudget.id"
    )


class KeyBudget(Base):
    """A spend limit of one key over a calendar period in its pool's time zone (pooler.budgets)."""

    __tablename__ = "key_budgets"
    __table_args__ = (UniqueConstraint("key_id", "period", "unit"),)

    id: Mapped[int_pk]
    key_id: Mapped[int] = mapped_column(ForeignKey("pool_keys.id", ondelete="CASCADE"), index=True)
    period: Mapped[str] = mapped_column(String(8))
    """`day`, `week` (from Monday) or `month`."""
    unit: Mapped[str] = mapped_column(String(8))
    """`tokens` or `usd` (priced by the pricing table)."""
    hard_limit: Mapped[float | None]
    """Requests are refused (429 budget_exceeded) once the period's usage reached it."""
    soft_limit: Mapped[float | None]
    """An alert is raised once the period's usage reached it."""

    key: Mapped[PoolKey] = relationship(back_populates="budgets")
