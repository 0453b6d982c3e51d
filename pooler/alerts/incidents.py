"""Incident lifecycle: signals open incidents, their absence resolves them after a cooldown.

- A signal with no open incident for its (rule, subject) opens one and queues an `opened` notification.
- A signal for an open incident refreshes it; a rise in severity queues an `escalated` notification.
- An operator may acknowledge an open incident (it is theirs; an escalation clears that) or silence it for a
  while (no notification is queued for it meanwhile). Both are audited.
- An open incident whose signal is gone starts a clear period; it resolves (and queues `resolved`) only once the
  condition has stayed clear for the cooldown. A condition that flaps within the cooldown therefore stays one
  incident with one `opened` and one `resolved` message instead of a notification per evaluation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


def _audit(session: Session, incident: AlertIncident, action: str, actor: Actor | None = None, **extra: Any) -> None:
    # The outcome is the incident's severity (or `resolved`): an outage must not read as a green "success".
    outcome = RESOLVED if action == "alert.resolve" else incident.severity
    who = actor or Actor(ActorType.SYSTEM, "alerts")
    audit.record(
        session,
        who,
        action=action,
        target_type="alert_incident",
        target_id=incident.id,
        target_label=incident.title,
        outcome=outcome if action.startswith(("alert.open", "alert.escalate", "alert.resolve")) else "success",
        details={"rule": incident.rule, "severity": incident.severity, "subject": incident.subject, **extra},
    )


def silenced(incident: AlertIncident, now: dt.datetime) -> bool:
    return incident.silenced_until is not None and incident.silenced_until > now


def acknowledge(session: Session, incident: AlertIncident, *, actor: Actor, now: dt.datetime) -> bool:
    """Marks an open incident as owned by an operator; False when it is resolved or already acknowledged."""
    if incident.status != OPEN or incident.acknowledged_at is not None:
        return False
    incident.acknowledged_at, incident.acknowledged_by = now, actor.label
    _audit(session, incident, "alert.acknowledge", actor)
    return True


MAX_SILENCE = dt.timedelta(days=7)
"""A silence longer than this would be forgotten; an operator silences again if it is still wanted."""


def silence(
    session: Session, incident: AlertIncident, duration: dt.timedelta, *, actor: Actor, now: dt.datetime
) -> bool:
    """No notification for this incident until now + duration (at most MAX_SILENCE); False when resolved."""
    if incident.status != OPEN or not dt.timedelta(0) < duration <= MAX_SILENCE:
        return False
    incident.silenced_until, incident.silenced_by = now + duration, actor.label
    _audit(session, incident, "alert.silence", actor, minutes=int(duration.total_seconds() // 60))
    return True


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
            # Worse than when it was acknowledged: it needs a new look.
            incident.acknowledged_at = incident.acknowledged_by = None
            if not silenced(incident, now):
                result.queued += _queue(session, incident, "escalated", channels, now)
            _audit(session, incident, "alert.escalate")
    for key, incident in existing.items():
        if key in current:
            continue
        if incident.clear_since is None:
            incident.clear_since = now
        if now - incident.clear_since >= cooldown:
            incident.status = RESOLVED
            incident.resolved_at = now
            result.resolved.append(incident.id)
            if not silenced(incident, now):
                result.queued += _queue(session, incident, "resolved", channels, now)
            _audit(session, incident, "alert.resolve")
    session.flush()
    return result
