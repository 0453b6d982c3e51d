"""Why an upstream account is or is not routable, in words an operator can act on.

A thin adapter over the selection policy: the facts of an account become one `AccountCandidate` and one
`PoolPolicy` per pool assignment, and `pooler.selection.eligibility.ineligibility` decides, so the admin's
readiness line, pool summaries and alerts speak the gateway's reason codes (`pooler.selection.reasons`) and
its sentences (`explain`). Only the request-independent part is asked (no model, nothing in flight, nothing
tried): model allow-lists, stickiness and concurrency are per request.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pooler.selection import AccountCandidate, PoolPolicy, SelectionRequest, WindowView, explain, ineligibility
from pooler.selection import reasons as rc
from pooler.selection.windows import live_until, quota_block
from pooler.states import AccountState, AssignmentStatus, PoolStatus

FIVE_HOUR_MINUTES = 300
WEEKLY_MINUTES = 10080
STALE_EVIDENCE = dt.timedelta(hours=6)
"""Evidence older than this earns a note on a routable line even when no staleness bound is configured."""
UNASSIGNED = "unassigned"
"""Not a selection reason: an account without any assignment is never a candidate."""


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
    primary_cap_percent: float | None = None
    """This pool's caps; None = the account-level fallback in AccountFacts."""
    secondary_cap_percent: float | None = None


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
    has_access_token: bool = True
    refresh_requested: bool = False
    """The gateway (401) or an operator asked for a refresh: the gateway skips the account until it lands."""


@dataclass(frozen=True)
class Readiness:
    routable: bool
    level: Level
    category: str
    """Coarse word for grouping and alerts: routable, paused, quota_exhausted, reauth, unassigned, ..."""
    reason: str
    until: dt.datetime | None = None
    notes: tuple[str, ...] = field(default=())
    code: str | None = None
    """The selection reason code (`pooler.selection.reasons`), or `unassigned`; None when routable."""


# Reason code -> coarse category (stable words the alerts and pool summaries group by).
_CATEGORY = {
    rc.ACCOUNT_PREFIX + AccountState.PAUSED: "paused",
    rc.ACCOUNT_PREFIX + AccountState.REAUTH_REQUIRED: "reauth",
    rc.ACCOUNT_PREFIX + AccountState.DEACTIVATED: "deactivated",
    rc.ACCOUNT_PREFIX + AccountState.REFRESH_FAILED: "refresh_failed",
    rc.ACCOUNT_PREFIX + AccountState.DELETED: "deleted",
    rc.NO_TOKEN: "reauth",
    rc.TOKEN_EXPIRED: "refresh_pending",
    rc.REFRESH_REQUESTED: "refresh_pending",
    rc.DEMOTED: "demoted",
    rc.RATE_LIMITED: "quota_exhausted",
    rc.QUOTA_EXHAUSTED: "quota_exhausted",
    rc.QUOTA_CAP: "quota_exhausted",
    rc.POOL_PAUSED: "unassigned",
    rc.ASSIGNMENT_PAUSED: "unassigned",
    UNASSIGNED: "unassigned",
}
# What the operator can do about it (appended to the policy's sentence).
_HINTS = {
    rc.ACCOUNT_PREFIX + AccountState.PAUSED: "Reactivate it to route.",
    rc.ACCOUNT_PREFIX + AccountState.REAUTH_REQUIRED: "Relink it or replace its auth.json.",
    rc.ACCOUNT_PREFIX + AccountState.DEACTIVATED: (
        "The upstream says this account or its workspace is deactivated: check it at chatgpt.com, then "
        "reactivate or relink it."
    ),
    rc.ACCOUNT_PREFIX + AccountState.REFRESH_FAILED: "Refresh again, or relink if it keeps failing.",
    rc.NO_TOKEN: "Replace its auth.json.",
    UNASSIGNED: "Assign it to a pool to route.",
}
# Account-level causes explain more than "the pool/assignment is paused" when pools disagree.
_POOL_LEVEL = frozenset({rc.POOL_PAUSED, rc.ASSIGNMENT_PAUSED})


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


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def candidate_of(facts: AccountFacts, assignment: AssignmentFacts) -> AccountCandidate:
    """The candidate the gateway's snapshot would build for this assignment (pooler/snapshot.py)."""
    return AccountCandidate(
        account_id=0,
        label="",
        plan_type=None,
        state=facts.state,
        assignment_status=assignment.status,
        priority=0,
        access_token_expires_at=_ts(facts.access_token_expires_at),
        demoted_until=_ts(facts.demoted_until),
        limited_until=None,  # 429 limits live only in the gateway's memory
        refresh_requested=facts.refresh_requested,
        has_token=facts.has_access_token,
        windows=tuple(
            WindowView(w.window_minutes, w.used_percent, _ts(w.resets_at), w.observed_at.timestamp())
            for w in facts.windows
        ),
    )


def policy_of(facts: AccountFacts, assignment: AssignmentFacts, stale_after: float | None) -> PoolPolicy:
    primary = assignment.primary_cap_percent
    secondary = assignment.secondary_cap_percent
    return PoolPolicy(
        pool_status=assignment.pool_status,
        strategy="least-used",
        primary_cap_percent=facts.primary_cap_percent if primary is None else primary,
        secondary_cap_percent=facts.secondary_cap_percent if secondary is None else secondary,
        stale_after_seconds=stale_after,
    )


def _until(code: str, candidate: AccountCandidate, policy: PoolPolicy, now: float) -> dt.datetime | None:
    end: float | None = None
    if code == rc.DEMOTED:
        end = candidate.demoted_until
    elif code in rc.QUOTA_REASONS:
        _, free_at = quota_block(candidate.windows, policy, now, policy.stale_after_seconds)
        end = None if math.isinf(free_at) or free_at <= 0 else free_at
    return None if end is None else dt.datetime.fromtimestamp(end, dt.UTC)


def _sentence(code: str, until: dt.datetime | None, now: dt.datetime) -> str:
    text = explain(code) if code != UNASSIGNED else "Not assigned to any pool."
    if until is not None:
        text = f"{text.rstrip('.')} (until {hhmm(until, now)})."
    hint = _HINTS.get(code)
    return f"{text} {hint}" if hint else text


def _notes(facts: AccountFacts, now: dt.datetime, stale_after: float | None) -> list[str]:
    notes: list[str] = []
    if facts.state in (AccountState.REFRESH_DUE, AccountState.REFRESHING):
        notes.append("token refresh pending")
    if not facts.windows:
        notes.append("no quota evidence yet")
    else:
        bound = STALE_EVIDENCE if stale_after is None else dt.timedelta(seconds=stale_after)
        if max(now - w.observed_at for w in facts.windows) > bound:
            notes.append("quota evidence is stale")
    return notes


def account_readiness(facts: AccountFacts, now: dt.datetime, stale_after_seconds: float | None = None) -> Readiness:
    """Routable when the selection policy accepts the account in at least one of its pools."""
    if not facts.assignments:
        text = _sentence(UNASSIGNED, None, now)
        return Readiness(False, Level.BLOCKED, _CATEGORY[UNASSIGNED], text, code=UNASSIGNED)
    now_ts = now.timestamp()
    request = SelectionRequest(now=now_ts)
    live: list[str] = []
    blocked: list[tuple[str, AccountCandidate, PoolPolicy]] = []
    for assignment in facts.assignments:
        candidate = candidate_of(facts, assignment)
        policy = policy_of(facts, assignment, stale_after_seconds)
        code = ineligibility(candidate, policy, request)
        if code is None:
            live.append(assignment.pool_name)
        else:
            blocked.append((code, candidate, policy))
    if not live:
        account_level = [b for b in blocked if b[0] not in _POOL_LEVEL]
        code, candidate, policy = (account_level or blocked)[0]
        until = _until(code, candidate, policy, now_ts)
        category = _CATEGORY.get(code, code)
        text = _sentence(code, until, now)
        if code == rc.TOKEN_EXPIRED and not facts.has_refresh_token:
            # Nothing to refresh with: only a new login helps.
            category, text = "reauth", f"{text} No refresh token is stored: relink it or replace its auth.json."
        return Readiness(False, Level.BLOCKED, category, text, until, code=code)
    notes = _notes(facts, now, stale_after_seconds)
    windows = [w for w in candidate_of(facts, facts.assignments[0]).windows if live_until(w, None) > now_ts]
    busiest = max(windows, key=lambda w: w.used_percent, default=None)
    head = f"Routable in {', '.join(sorted(live))}"
    if busiest is not None:
        head += f"; {window_name(busiest.window_minutes)} {busiest.used_percent:.0f}% used"
    if notes:
        head += f" ({'; '.join(notes)})"
    return Readiness(True, Level.WARN if notes else Level.OK, "routable", head, notes=tuple(notes))


_CATEGORY_WORDS = {
    "quota_exhausted": "quota-exhausted",
    "paused": "paused",
    "reauth": "need re-authentication",
    "refresh_failed": "failed refresh",
    "refresh_pending": "awaiting a token refresh",
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
