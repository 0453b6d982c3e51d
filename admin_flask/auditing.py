"""Audit events for admin actions, attributed to the logged-in operator."""

from __future__ import annotations

from typing import Any

from flask import g

from admin_flask.db import get_db
from pooler import audit
from pooler.audit import Actor
from pooler.states import ActorType


def record(
    action: str,
    target_type: str,
    target_id: object | None = None,
    target_label: str | None = None,
    *,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> None:
    principal = g.get("principal")
    audit.record(
        get_db(),
        Actor(ActorType.OPERATOR, actor_label or (principal.username if principal else None)),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        outcome=outcome,
        details=details,
    )


def actor() -> Actor:
    """The logged-in operator as the actor services write into their audit events."""
    principal = g.get("principal")
    return Actor(ActorType.OPERATOR, principal.username if principal else None)
