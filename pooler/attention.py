"""What needs the operator's attention now: pure policy over plain data (no I/O).

- `attention(signals, incidents, now)`: the alert rules' signals as evaluated at this moment, joined with the
  stored incidents (which carry acknowledgement and silence), most severe first. A signal the scheduler has not
  recorded yet still shows (`new`), so an outage is visible on the next page load, not the next alert run.
- `pool_badge(...)`: a pool's status as what can route now (`active · 0 routable` is an outage, not green).
- `job_status(outcome, counts)`: what a job run did, as a level; a run that moved accounts to
  `reauth_required` is a warning even though nothing failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pooler.alerts.rules import SEVERITY_RANK, Severity, Signal
from pooler.states import PoolStatus


class ItemState(StrEnum):
    NEW = "new"
    """The condition holds now; the scheduler's next alert run records it (and notifies)."""
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    CLEARING = "clearing"
    """Recorded, no longer seen, not yet resolved (the cooldown damps flapping)."""
    RESOLVED = "resolved"


@dataclass(frozen=True)
class IncidentFacts:
    """A stored incident as plain data."""

    id: int
    rule: str
    subject: str
    severity: str
    status: str
    title: str
    details: Mapping[str, Any]
    opened_at: dt.datetime
    resolved_at: dt.datetime | None = None
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    silenced_until: dt.datetime | None = None
    silenced_by: str | None = None


@dataclass(frozen=True)
class AttentionItem:
    rule: str
    subject: str
    severity: str
    title: str
    impact: str
    next_check: str
    state: ItemState
    incident_id: int | None = None
    opened_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    silenced_until: dt.datetime | None = None
    resolved_at: dt.datetime | None = None

    @property
    def pool_id(self) -> int | None:
        """The pool an item is about (`pool:3`), else None."""
        kind, _, value = self.subject.partition(":")
        return int(value) if kind == "pool" and value.isdigit() else None

    @property
    def quiet(self) -> bool:
        """Acknowledged or silenced: shown, but no longer shouting."""
        return self.state in (ItemState.ACKNOWLEDGED, ItemState.SILENCED, ItemState.CLEARING)


def incident_state(incident: IncidentFacts, now: dt.datetime, seen_now: bool = True) -> ItemState:
    if incident.status != "open":
        return ItemState.RESOLVED
    if incident.silenced_until is not None and incident.silenced_until > now:
        return ItemState.SILENCED
    if incident.acknowledged_at is not None:
        return ItemState.ACKNOWLEDGED
    return ItemState.OPEN if seen_now else ItemState.CLEARING


def _rank(item: AttentionItem) -> tuple[int, int, float]:
    opened = item.opened_at.timestamp() if item.opened_at else float("inf")
    return (int(item.quiet), -SEVERITY_RANK.get(item.severity, 0), opened)


def attention(signals: Sequence[Signal], incidents: Iterable[IncidentFacts], now: dt.datetime) -> list[AttentionItem]:
    """Everything open now: live signals (with their stored incident, if any) and stored open incidents the
    signals no longer show. Loud items first, then by severity (security and outage on top), then oldest."""
    open_by_key = {(i.rule, i.subject): i for i in incidents if i.status == "open"}
    items: list[AttentionItem] = []
    for signal in signals:
        stored = open_by_key.pop((signal.rule, signal.subject), None)
        items.append(
            AttentionItem(
                rule=signal.rule,
                subject=signal.subject,
                severity=signal.severity.value,
                title=signal.title,
                impact=signal.impact,
                next_check=signal.next_check,
                state=ItemState.NEW if stored is None else incident_state(stored, now),
                incident_id=None if stored is None else stored.id,
                opened_at=None if stored is None else stored.opened_at,
                acknowledged_by=None if stored is None else stored.acknowledged_by,
                silenced_until=None if stored is None else stored.silenced_until,
            )
        )
    for stored in open_by_key.values():
        items.append(item_of(stored, now, seen_now=False))
    return sorted(items, key=_rank)


def item_of(incident: IncidentFacts, now: dt.datetime, seen_now: bool = True) -> AttentionItem:
    details = incident.details
    return AttentionItem(
        rule=incident.rule,
        subject=incident.subject,
        severity=incident.severity,
        title=incident.title,
        impact=str(details.get("impact", "")),
        next_check=str(details.get("next_check", "")),
        state=incident_state(incident, now, seen_now),
        incident_id=incident.id,
        opened_at=incident.opened_at,
        acknowledged_by=incident.acknowledged_by,
        silenced_until=incident.silenced_until,
        resolved_at=incident.resolved_at,
    )


def worst(items: Iterable[AttentionItem]) -> str | None:
    """The highest severity among the items that still shout (not acknowledged or silenced), else None."""
    loud = [i.severity for i in items if not i.quiet]
    return max(loud, key=lambda s: SEVERITY_RANK.get(s, 0)) if loud else None


@dataclass(frozen=True)
class Badge:
    text: str
    level: str
    """A severity (`outage`, `degraded`, `watch`), `ok`, or the pool's own status when it takes no traffic."""


def pool_badge(status: str, routable: int, total: int, min_routable: int = 1) -> Badge:
    """`active · 0 routable` (outage), below `min_routable` (the `pool_low_routable` alert's threshold) degraded,
    `active · 2 of 5 routable` (watch), `active · 5 routable` (ok): the same judgement as the alert rules."""
    if status != PoolStatus.ACTIVE:
        return Badge(status, status)
    if routable == 0:
        return Badge("active · 0 routable", Severity.OUTAGE.value)
    text = f"active · {routable} of {total} routable" if routable < total else f"active · {routable} routable"
    if routable < min_routable:
        return Badge(text, Severity.DEGRADED.value)
    return Badge(text, Severity.WATCH.value if routable < total else "ok")


class JobLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    RUNNING = "running"


# Counts a job returns that mean "accounts left service and an operator must act" (not failures of the job).
ATTENTION_COUNTS: Mapping[str, str] = {
    "reauth_required": "moved {n} account{s} to reauth_required",
}
# Counts that say the job changed something (shown first in the summary).
MOVED_COUNTS: Mapping[str, str] = {
    "refreshed": "refreshed {n}",
    "polled": "polled {n}",
    "state_changes": "changed {n} account state{s}",
    "opened": "opened {n} incident{s}",
    "escalated": "escalated {n} incident{s}",
    "resolved": "resolved {n} incident{s}",
    "delivered": "sent {n} notification{s}",
    "deleted": "deleted {n}",
}


@dataclass(frozen=True)
class JobStatus:
    level: JobLevel
    summary: str


def _say(template: str, n: int) -> str:
    return template.format(n=n, s="" if n == 1 else "s")


def job_status(outcome: str, counts: Mapping[str, Any] | None, error_code: str | None = None) -> JobStatus:
    """What a run did and how worried to be: failed > warning (failures or accounts moved out) > ok."""
    counts = {k: int(v) for k, v in (counts or {}).items() if isinstance(v, int | float)}
    if outcome == "running":
        return JobStatus(JobLevel.RUNNING, "running")
    if outcome == "failed":
        return JobStatus(JobLevel.FAILED, f"failed ({error_code})" if error_code else "failed")
    parts = [_say(t, counts[k]) for k, t in ATTENTION_COUNTS.items() if counts.get(k)]
    failed = counts.get("failed", 0)
    if failed:
        parts.append(f"{failed} failed")
    warning = bool(parts)
    parts += [_say(t, counts[k]) for k, t in MOVED_COUNTS.items() if counts.get(k)]
    summary = ", ".join(parts) if parts else "no changes"
    return JobStatus(JobLevel.WARNING if warning or outcome == "partial" else JobLevel.OK, summary)
