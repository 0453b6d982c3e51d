"""Incident lifecycle: signals open incidents, their absence resolves them after a cooldown.

- A signal with no open incident for its (rule, subject) opens one and queues an `opened` notification.
- A signal for an open incident refreshes it; a rise in severity queues an `escalated` notification.
- An open incident whose signal is gone starts a clear period; it resolves (and queues `resolved`) only once the
  condition has stayed clear for the cooldown. A condition that flaps within the cooldown therefore stays one
  incident with one `opened` and one `resolved` message instead of a notification per evaluation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler import audit
from pooler.alerts.rules import SEVERITY_RANK, Signal
from pooler.audit import Actor
from pooler.models import AlertDelivery, AlertIncident
from pooler.states import ActorType

OPEN = "open"
RESOLVED = "resolved"


@dataclass
class Transitions:
    opened: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    queued: int = 0


def open_incidents(session: Session) -> list[AlertIncident]:
    return list(session.scalars(select(AlertIncident).where(AlertIncident.status == OPEN).order_by(AlertIncident.id)))


def _queue(session: Session, incident: AlertIncident, event: str, channels: Sequence[str], now: dt.datetime) -> int:
    for channel in channels:
        session.add(
            AlertDelivery(incident_id=incident.id, event=event, channel=channel, status="pending", next_attempt_at=now)
        )
    return len(channels)


def _audit(session: Session, incident: AlertIncident, action: str) -> None:
    audit.record(
        session,
        Actor(ActorType.SYSTEM, "alerts"),
        action=action,
        target_type="alert_incident",
        target_id=incident.id,
        target_label=incident.title,
        details={"rule": incident.rule, "severity": incident.severity, "subject": incident.subject},
    )


def apply_signals(
    session: Session,
    signals: Sequence[Signal],
    now: dt.datetime,
    *,
    cooldown: dt.timedelta,
    channels: Sequence[str],
) -> Transitions:
    """Reconciles open incidents with the current signals. Never commits (the caller owns the transaction)."""
    result = Transitions()
    current = {(s.rule, s.subject): s for s in signals}
    existing = {(i.rule, i.subject): i for i in open_incidents(session)}
    for key, signal in current.items():
        incident = existing.get(key)
        if incident is None:
            incident = AlertIncident(
                rule=signal.rule,
                subject=signal.subject,
                severity=signal.severity.value,
                status=OPEN,
                title=signal.title[:200],
                details=signal.as_details(),
                opened_at=now,
                last_seen_at=now,
            )
            session.add(incident)
            session.flush()
            result.opened.append(incident.id)
            result.queued += _queue(session, incident, "opened", channels, now)
            _audit(session, incident, "alert.open")
            continue
        escalated = SEVERITY_RANK[signal.severity.value] > SEVERITY_RANK.get(incident.severity, 0)
        incident.severity = signal.severity.value
        incident.title = signal.title[:200]
        incident.details = signal.as_details()
        incident.last_seen_at = now
        incident.clear_since = None
        if escalated:
            result.escalated.append(incident.id)
            result.queued += _queue(session, incident, "escalated", channels, now)
    for key, incident in existing.items():
        if key in current:
            continue
        if incident.clear_since is None:
            incident.clear_since = now
        if now - incident.clear_since >= cooldown:
            incident.status = RESOLVED
            incident.resolved_at = now
            result.resolved.append(incident.id)
            result.queued += _queue(session, incident, "resolved", channels, now)
            _audit(session, incident, "alert.resolve")
    session.flush()
    return result
