"""Login throttling per client address, beside the per-operator lock of pooler.services.operators.

The operator lock alone lets a stranger keep an operator locked out by failing on purpose. Counting failures
per client address as well stops one address after `LOGIN_IP_MAX_FAILURES` failures in `LOGIN_IP_WINDOW`:
its further attempts get 429 before any password is checked, so they neither extend the operator's lock nor
cost argon2 time. Failures are `operator.login_failed` audit events (target = the client address), so the
count holds across gunicorn workers and admin replicas, and the audit log shows where failures came from.

The client address is what Envoy derives (`x-pooler-client-ip`, overwritten on every request, trusted proxies
honoured), believed only when the TCP peer is loopback, i.e. Envoy in the same network namespace; anything
else is the peer itself, so a client cannot choose its own bucket by sending the header.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from flask import current_app, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.gateway_contract import CLIENT_IP_HEADER
from pooler.models import AuditEvent, utcnow
from pooler.states import ActorType

FAILED_ACTION = "operator.login_failed"
DEFAULT_MAX_FAILURES = 20
DEFAULT_WINDOW = dt.timedelta(minutes=15)


def _ip(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((text or "").strip()))
    except ValueError:
        return None


def peer_is_loopback() -> bool:
    """The TCP peer is on this host (Envoy in the same network namespace): its x-pooler-* and X-Forwarded-Proto
    headers are believed, anyone else's are not."""
    peer = _ip(request.remote_addr)
    return peer is not None and ipaddress.ip_address(peer).is_loopback


def client_address() -> str:
    """The requesting client's IP: Envoy's derived address when Envoy is the peer, else the peer."""
    peer = _ip(request.remote_addr)
    if peer_is_loopback():
        forwarded = _ip(request.headers.get(CLIENT_IP_HEADER))
        if forwarded is not None:
            return forwarded
    return peer or "unknown"


def _limits() -> tuple[int, dt.timedelta]:
    config = current_app.config
    window = dt.timedelta(seconds=float(config.get("LOGIN_IP_WINDOW_SECONDS", DEFAULT_WINDOW.total_seconds())))
    return int(config.get("LOGIN_IP_MAX_FAILURES", DEFAULT_MAX_FAILURES)), window


def recent_failures(session: Session, address: str, now: dt.datetime, window: dt.timedelta) -> int:
    query = select(func.count()).where(
        AuditEvent.created_at >= now - window,
        AuditEvent.action == FAILED_ACTION,
        AuditEvent.target_id == address,
    )
    return int(session.scalar(query) or 0)


def blocked(session: Session, address: str, now: dt.datetime | None = None) -> bool:
    limit, window = _limits()
    return recent_failures(session, address, now or utcnow(), window) >= limit


def record_failure(session: Session, address: str, username: str, outcome: str) -> None:
    """One failed attempt from `address` (the caller commits; the username is what was typed, capped)."""
    audit.record(
        session,
        Actor(ActorType.OPERATOR, username[:64] or None),
        action=FAILED_ACTION,
        target_type="client",
        target_id=address,
        target_label=username[:64] or None,
        outcome="failure",
        details={"reason": outcome},
    )
