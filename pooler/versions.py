"""The routing change counter: bumped with every routing-relevant write so gateways reload their snapshot."""

from __future__ import annotations

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from pooler.models import DataVersion, utcnow

ROUTING = "routing"
NOTIFY_CHANNEL = "pooler_routing"
REQUESTS_CHANNEL = "pooler_requests"
"""Notified when request-log rows were written: processes that picked for requests another process logged
(`pooler up`'s decision workers, replicas) look their ends up at once instead of at their next check."""


def bump_routing_version(session: Session) -> None:
    """Call inside the writing transaction; PostgreSQL listeners are notified when it commits."""
    session.execute(
        update(DataVersion)
        .where(DataVersion.name == ROUTING)
        .values(version=DataVersion.version + 1, updated_at=utcnow())
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


def notify_requests_written(session: Session) -> None:
    """Call inside the writing transaction (PostgreSQL only; elsewhere the readers poll)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {REQUESTS_CHANNEL}"))


def routing_version(session: Session) -> int:
    return int(session.scalar(select(DataVersion.version).where(DataVersion.name == ROUTING)) or 0)
