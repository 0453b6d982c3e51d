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


ENDED_CHANNEL = "pooler_requests_ended"
"""Notified by an access-log receiver as soon as requests' ends reach it, before their rows are written (payload:
the request ids, space-separated): decision workers free those requests' stream and admission slots at once."""
NOTIFY_PAYLOAD_LIMIT = 7000
"""Bytes per notification payload (PostgreSQL refuses more than 8000)."""


def notify_requests_ended(session: Session, request_ids: list[str]) -> None:
    """Call in a transaction (PostgreSQL only; elsewhere the workers poll `request_logs`). Envoy's request ids
    are UUIDs, routing metadata with no client content."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for payload in ended_payloads(request_ids):
        session.execute(text("SELECT pg_notify(:channel, :ids)"), {"channel": ENDED_CHANNEL, "ids": payload})


def ended_payloads(request_ids: list[str]) -> list[str]:
    """The ids space-separated, in as few payloads of at most NOTIFY_PAYLOAD_LIMIT bytes as they fit."""
    payloads: list[str] = []
    chunk: list[str] = []
    size = 0
    for request_id in request_ids:
        if chunk and size + len(request_id) + 1 > NOTIFY_PAYLOAD_LIMIT:
            payloads.append(" ".join(chunk))
            chunk, size = [], 0
        chunk.append(request_id)
        size += len(request_id) + 1
    if chunk:
        payloads.append(" ".join(chunk))
    return payloads


def routing_version(session: Session) -> int:
    return int(session.scalar(select(DataVersion.version).where(DataVersion.name == ROUTING)) or 0)
