"""Why an upstream account is or is not routable, in words an operator can act on.

A pure function over plain data, used by the admin's account cards and pool summaries until (and beside) the
selection policy's own eligibility reasons. It answers the request-independent part only: lifecycle,
assignment, demotion, credential freshness and quota evidence. Model and stickiness checks happen per request.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pooler.states import AccountState, AssignmentStatus, PoolStatus

FIVE_HOUR_MINUTES = 300
WEEKLY_MINUTES = 10080
STALE_EVIDENCE = dt.timedelta(hours=6)


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class WindowFacts:
    window_minutes: int
    used_percent: float
    resets_at: dt.datetime | None
    observed_at: dt.datetime


@dataclass(frozen=True)
class AssignmentFacts:
    pool_name: str
    status: str = AssignmentStatus.ACTIVE
    pool_status: str = PoolStatus.ACTIVE


@dataclass(frozen=True)
class AccountFacts:
    state: str
    state_reason: str | None = None
    assignments: Sequence[AssignmentFacts] = ()
    windows: Sequence[WindowFacts] = ()
    demoted_until: dt.datetime | None = None
    access_token_expires_at: dt.datetime | None = None
    has_refresh_token: bool = True
    primary_cap_percent: float = 100.0
    secondary_cap_percent: float = 100.0


@dataclass(frozen=True)
class Readiness:
    routable: bool
    level: Level
    category: str
    """Short machine word for grouping: routable, paused, quota_exhausted, reauth, unassigned, ..."""
    reason: str
    until: dt.datetime | None = None
    notes: tuple[str, ...] = field(default=())


def window_name(minutes: int) -> str:
    if minutes == FIVE_HOUR_MINUTES:
        return "5h"
    if minutes == WEEKLY_MINUTES:
        return "weekly"
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def hhmm(moment: dt.datetime, now: dt.datetime) -> str:
    """`14:05` today, `Tue 14:05` within a week, else a date (UTC, as stored)."""
    moment = moment.astimezone(dt.UTC)
    if moment.date() == now.astimezone(dt.UTC).date():
        return moment.strftime("%H:%M")
    if moment - now < dt.timedelta(days=6):
        return moment.strftime("%a %H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def _cap(window: WindowFacts, facts: AccountFacts) -> float:
    return facts.secondary_cap_percent if window.window_minutes == WEEKLY_MINUTES else facts.primary_cap_percent


def _exhausted(facts: AccountFacts, now: dt.datetime) -> WindowFacts | None:
    """The full window that blocks longest, ignoring windows whose reset time has already passed."""
    blocking = [
        w for w in facts.windows if w.used_percent >= _cap(w, facts) and (w.resets_at is None or w.resets_at > now)
    ]
    if not blocking:
        return None
    far_future = now + dt.timedelta(days=3650)
    return max(blocking, key=lambda w: w.resets_at or far_future)


def account_readiness(facts: AccountFacts, now: dt.datetime) -> Readiness:
    state = facts.state
    if state == AccountState.DELETED:
        return Readiness(False, Level.BLOCKED, "deleted", "Deleted: never routed")
    if state == AccountState.PAUSED:
        why = f" ({facts.state_reason})" if facts.state_reason and facts.state_reason != "operator" else ""
        return Readiness(False, Level.BLOCKED, "paused", f"Paused by an operator{why}: reactivate to route")
    if state == AccountState.REAUTH_REQUIRED:
        return Readiness(
            False, Level.BLOCKED, "reauth", "Needs re-authentication: replace its auth.json with a fresh login"
        )
    live_pools = [
        a.pool_name
        for a in facts.assignments
        if a.status == AssignmentStatus.ACTIVE and a.pool_status == PoolStatus.ACTIVE
    ]
    if not facts.assignments:
        return Readiness(False, Level.BLOCKED, "unassigned", "Not assigned to any pool: assign it to route")
    if not live_pools:
        return Readiness(False, Level.BLOCKED, "unassigned", "Every pool assignment or pool is paused")
    token_expired = facts.access_token_expires_at is not None and facts.access_token_expires_at <= now
    if state == AccountState.REFRESH_FAILED and (token_expired or facts.access_token_expires_at is None):
        return Readiness(False, Level.BLOCKED, "refresh_failed", "Token refresh failed and the token has expired")
    if token_expired and not facts.has_refresh_token:
        return Readiness(False, Level.BLOCKED, "reauth", "Access token expired and no refresh token is stored")
    if facts.demoted_until is not None and facts.demoted_until > now:
        until = facts.demoted_until
        return Readiness(
            False, Level.BLOCKED, "demoted", f"Demoted after upstream errors until {hhmm(until, now)}", until
        )
    full = _exhausted(facts, now)
    if full is not None:
        when = f"until {hhmm(full.resets_at, now)}" if full.resets_at else "(reset time unknown)"
        reason = f"{window_name(full.window_minutes)} quota exhausted {when}"
        if full.used_percent < 100:
            reason = f"{window_name(full.window_minutes)} window above the pool cap {when}"
        return Readiness(False, Level.BLOCKED, "quota_exhausted", reason, full.resets_at)
    if state == AccountState.QUOTA_EXHAUSTED:
        # Lifecycle says exhausted but the evidence shows room (or has reset): the scheduler will reactivate it.
        return Readiness(False, Level.BLOCKED, "quota_exhausted", "Quota exhausted (awaiting fresh evidence)")
    notes: list[str] = []
    level = Level.OK
    if token_expired or state in (AccountState.REFRESH_DUE, AccountState.REFRESHING):
        notes.append("token refresh pending")
        level = Level.WARN
    if state == AccountState.REFRESH_FAILED:
        notes.append("last token refresh failed")
        level = Level.WARN
    if not facts.windows:
        notes.append("no quota evidence yet")
        level = Level.WARN
    elif max(now - w.observed_at for w in facts.windows) > STALE_EVIDENCE:
        notes.append("quota evidence is stale")
        level = Level.WARN
    busiest = max(facts.windows, key=lambda w: w.used_percent, default=None)
    head = f"Routable in {', '.join(sorted(live_pools))}"
    if busiest is not None:
        head += f"; {window_name(busiest.window_minutes)} {busiest.used_percent:.0f}% used"
    if notes:
        head += f" ({'; '.join(notes)})"
    return Readiness(True, level, "routable", head, notes=tuple(notes))


_CATEGORY_WORDS = {
    "quota_exhausted": "quota-exhausted",
    "paused": "paused",
    "reauth": "need re-authentication",
    "refresh_failed": "failed refresh",
    "demoted": "demoted",
    "unassigned": "not routed by assignment",
    "deleted": "deleted",
}


def pool_summary(readiness: Sequence[Readiness], now: dt.datetime) -> str:
    """`3 of 5 accounts routable; 2 quota-exhausted until 14:05; 1 paused`."""
    total = len(readiness)
    if total == 0:
        return "No accounts assigned"
    routable = sum(1 for r in readiness if r.routable)
    parts = [f"{routable} of {total} account{'s' if total != 1 else ''} routable"]
    counts = Counter(r.category for r in readiness if not r.routable)
    for category, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        word = _CATEGORY_WORDS.get(category, category.replace("_", " "))
        text = f"{count} {word}"
        untils = [r.until for r in readiness if r.category == category and r.until is not None]
        if untils:
            text += f" until {hhmm(min(untils), now)}"
        parts.append(text)
    return "; ".join(parts)
