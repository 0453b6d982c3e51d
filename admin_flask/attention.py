"""The attention read model for the admin: what needs an operator now, within their pool scope.

The alert rules are evaluated live on each page load (the same pure rules the scheduler runs) and joined with
the stored incidents, so an outage shows on the next load even before the scheduler's next alert run records
it; acknowledgement and silence live on the stored incident (`pooler.attention`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin_flask.security import Principal
from pooler.alerts.evaluate import load_thresholds
from pooler.alerts.rules import evaluate_rules
from pooler.alerts.snapshot import load_alert_snapshot
from pooler.attention import AttentionItem, IncidentFacts, attention
from pooler.models import AlertIncident, PoolKey
from pooler.timefmt import human_delta

RESOLVED_SHOWN = 100
SILENCE_MINUTES = (60, 240, 1440)
"""How long an operator can silence an incident for (an hour, four hours, a day)."""


def facts_of(row: AlertIncident) -> IncidentFacts:
    return IncidentFacts(
        id=row.id,
        rule=row.rule,
        subject=row.subject,
        severity=row.severity,
        status=row.status,
        title=row.title,
        details=row.details or {},
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        silenced_until=row.silenced_until,
        silenced_by=row.silenced_by,
    )


def key_pools(session: Session) -> dict[str, int]:
    return {prefix: pool_id for prefix, pool_id in session.execute(select(PoolKey.prefix, PoolKey.pool_id))}


def subject_pool(subject: str, key_pools: dict[str, int]) -> int | None:
    """The pool an incident's subject belongs to (`pool:3`, or a key's pool), else None (jobs, unassigned)."""
    kind, _, value = subject.partition(":")
    if kind == "pool" and value.isdigit():
        return int(value)
    if kind == "key":
        return key_pools.get(value)
    return None


def in_scope(me: Principal, subject: str, key_pools: dict[str, int]) -> bool:
    """Owners and viewers see everything; an admin sees what concerns the pools they are assigned."""
    if me.all_pools:
        return True
    pool_id = subject_pool(subject, key_pools)
    return pool_id is not None and me.sees_pool(pool_id)


def may_act(me: Principal, subject: str, key_pools: dict[str, int]) -> bool:
    """Acknowledge and silence: owners anything; admins what concerns their pools; viewers nothing."""
    if not me.can_write:
        return False
    return me.is_owner or (subject_pool(subject, key_pools) is not None and in_scope(me, subject, key_pools))


class Attention:
    """Items for one page load, with the scope facts the templates need."""

    def __init__(self, session: Session, me: Principal, now: dt.datetime) -> None:
        self.me, self.now = me, now
        self.silence_choices = [(m, human_delta(m * 60)) for m in SILENCE_MINUTES]
        self.key_pools = key_pools(session)
        thresholds = load_thresholds(session)
        signals = evaluate_rules(load_alert_snapshot(session, thresholds, now), thresholds)
        stored = session.scalars(select(AlertIncident).where(AlertIncident.status == "open"))
        self.items = [
            i for i in attention(signals, [facts_of(r) for r in stored], now) if in_scope(me, i.subject, self.key_pools)
        ]

    def for_pool(self, pool_id: int) -> list[AttentionItem]:
        return [i for i in self.items if subject_pool(i.subject, self.key_pools) == pool_id]

    def may_act(self, item: AttentionItem) -> bool:
        return item.incident_id is not None and may_act(self.me, item.subject, self.key_pools)
