"""Audit trail: who did what to which object, with what outcome. Metadata only, never secrets."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from pooler.models import AuditEvent, utcnow
from pooler.states import ActorType


def record(
    session: Session,
    *,
    actor_type: ActorType | str,
    actor_label: str | None,
    action: str,
    target_type: str,
    target_id: object | None = None,
    target_label: str | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        created_at=utcnow(),
        actor_type=str(actor_type),
        actor_label=actor_label,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        target_label=target_label,
        outcome=outcome,
        details=details,
    )
    session.add(event)
    return event
