"""Audit trail: who (an `Actor`) did what to which object, with what outcome. Metadata only, never secrets.

Below the services: settings, lifecycle and every service write audit events through `record`."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from pooler.models import AuditEvent, utcnow
from pooler.states import ActorType


@dataclass(frozen=True)
class Actor:
    type: ActorType
    label: str | None = None


def cli_actor() -> Actor:
    """The CLI acts as the local OS user (best effort: containers may have no passwd entry)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return Actor(ActorType.CLI, user)


SYSTEM = Actor(ActorType.SYSTEM, "system")
SCHEDULER = Actor(ActorType.SCHEDULER, "scheduler")
GATEWAY = Actor(ActorType.GATEWAY, "gateway")


def record(
    session: Session,
    actor: Actor,
    *,
    action: str,
    target_type: str,
    target_id: object | None = None,
    target_label: str | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        created_at=utcnow(),
        actor_type=str(actor.type),
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        target_label=target_label,
        outcome=outcome,
        details=details,
    )
    session.add(event)
    return event
