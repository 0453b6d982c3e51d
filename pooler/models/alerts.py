"""Alert incidents (one per rule and subject while it lasts) and their queued notifications."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, int_pk, str64, str200, utc_now


class AlertIncident(Base):
    __tablename__ = "alert_incidents"
    __table_args__ = (Index("ix_alert_incidents_rule_subject_status", "rule", "subject", "status"),)

    id: Mapped[int_pk]
    rule: Mapped[str64]
    """Rule id (`pool_no_routable`, `key_errors_spike`, ...)."""
    subject: Mapped[str] = mapped_column(String(120))
    """What the rule fired for (`pool:3`, `key:cpk_ab12cd34`, `job:poll_usage`): one open incident per pair."""
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    """open, resolved."""
    title: Mapped[str200]
    details: Mapped[dict[str, Any]]
    """Metadata only (pool label, key prefix, counts, states); what the notification text is built from."""
    opened_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    clear_since: Mapped[dt.datetime | None]
    """First evaluation that no longer saw the condition; resolves after the cooldown (flap damping)."""
    resolved_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]
    """An operator has seen it and owns it; cleared when the incident escalates (it needs a new look)."""
    acknowledged_by: Mapped[str200 | None]
    silenced_until: Mapped[dt.datetime | None]
    """No notification is queued for it until then; the admin lists it as silenced."""
    silenced_by: Mapped[str200 | None]


class AlertDelivery(Base):
    """One notification of one incident event to one channel, retried with backoff until sent or given up."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_status_next", "status", "next_attempt_at"),)

    id: Mapped[int_pk]
    incident_id: Mapped[int] = mapped_column(ForeignKey("alert_incidents.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(16))
    """opened, escalated, resolved."""
    channel: Mapped[str] = mapped_column(String(16))
    """webhook, email."""
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, delivered, failed."""
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str64 | None]
    """Safe error code (exception class or `http_500`), never a response body."""
    created_at: Mapped[utc_now]
    delivered_at: Mapped[dt.datetime | None]
