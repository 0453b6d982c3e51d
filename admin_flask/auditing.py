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
    actor_label: str | None = None,
    **options: Any,
) -> None:
    """`pooler.audit.record` in the request's session, as the logged-in operator (or `actor_label`, for the
    bootstrap, which acts before anyone is logged in); `options` are its outcome and details."""
    audit.record(
        get_db(),
        actor(actor_label),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        **options,
    )


def actor(label: str | None = None) -> Actor:
    """The logged-in operator (or the operator called `label`) as the actor services write into their audit
    events."""
    principal = g.get("principal")
    return Actor(ActorType.OPERATOR, label or (principal.username if principal else None))
