"""Why an upstream account is or is not routable, in words an operator can act on.

A thin adapter over the selection policy: the facts of an account become one `AccountCandidate` and one
`PoolPolicy` per pool assignment, and `pooler.selection.eligibility.ineligibility` decides, so the admin's
readiness line, pool summaries and alerts speak the gateway's reason codes (`pooler.selection.reasons`) and
its sentences (`explain`). Only the request-independent part is asked (no model, nothing in flight, nothing
tried): model allow-lists, stickiness and concurrency are per request.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from pooler.selection import AccountCandidate, PoolPolicy, SelectionRequest, WindowView, explain, ineligibility
from pooler.selection import reasons as rc
from pooler.selection.windows import block_reason, cap_for, live_until
from pooler.states import FIVE_HOUR_MINUTES, WEEKLY_MINUTES, AccountState, AssignmentStatus, PoolStatus, Strategy
from pooler.timefmt import moment_text

STALE_EVIDENCE = dt.timedelta(hours=6)
"""Evidence older than this earns a note on a routable line even when no staleness bound is configured."""
UNASSIGNED = "unassigned"
"""Not a selection reason: an account without any assignment is never a candidate."""


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    BLOCKED = "blocked"


class Fix(StrEnum):
    """What an operator can do about a cause, offered on the same card as the readiness line."""

    RELINK = "relink"
    """Sign the account in again through OpenAI (the onboarding relink flow)."""
    REPLACE_AUTH = "replace_auth"
    """Upload a fresh auth.json of the same ChatGPT account."""
    REFRESH = "refresh"
    """Ask the scheduler for a token refresh (useful only while the refresh token is still accepted)."""
    REACTIVATE = "reactivate"
    RESUME_POOL = "resume_pool"
    MANAGE = "manage"
    """Change an assignment on the account's page (assign to a pool, resume a paused assignment)."""
    WAIT = "wait"
    """Nothing to do but wait until `Readiness.until`."""


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
    """When the cause ends by itself (a quota window's reset, as its bar shows it; a demotion's end)."""
    notes: tuple[str, ...] = field(default=())
    code: str | None = None
    """The selection reason code (`pooler.selection.reasons`), or `unassigned`; None when routable."""
    fixes: tuple[Fix, ...] = ()
    """What fixes the cause, most useful first; empty when routable or nothing can be done."""
    pool: str | None = None
    """The pool a pool-level cause (and `Fix.RESUME_POOL`) is about."""


@dataclass(frozen=True)
class Cause:
    """How one reason code reads and what fixes it. A new account state adds one row to `CAUSES`."""

    category: str
    hint: str | None = None
    fixes: tuple[Fix, ...] = ()


_SIGN_IN_AGAIN = (Fix.RELINK, Fix.REPLACE_AUTH)
CAUSES: dict[str, Cause] = {
    rc.ACCOUNT_PREFIX + AccountState.PAUSED: Cause("paused", "Reactivate it to route.", (Fix.REACTIVATE,)),
    rc.ACCOUNT_PREFIX + AccountState.REAUTH_REQUIRED: Cause(
        "reauth", "Its refresh token was rejected: relink it or replace its auth.json.", _SIGN_IN_AGAIN
    ),
    rc.ACCOUNT_PREFIX + AccountState.REFRESH_FAILED: Cause(
        "refresh_failed",
        "Relink it or replace its auth.json; refreshing again may help if the failure was brief.",
        (*_SIGN_IN_AGAIN, Fix.REFRESH),
    ),
    rc.ACCOUNT_PREFIX + AccountState.DEACTIVATED: Cause(
        "deactivated",
        "The upstream says this account or its workspace is deactivated: check it at chatgpt.com, then "
        "reactivate or relink it.",
        (Fix.REACTIVATE, *_SIGN_IN_AGAIN),
    ),
    rc.ACCOUNT_PREFIX + AccountState.DELETED: Cause("deleted"),
    rc.NO_TOKEN: Cause("reauth", "Relink it or replace its auth.json.", _SIGN_IN_AGAIN),
    rc.TOKEN_EXPIRED: Cause("refresh_pending", "The scheduler refreshes it shortly.", (Fix.REFRESH,)),
    rc.REFRESH_REQUESTED: Cause("refresh_pending", "The scheduler refreshes it shortly.", (Fix.REFRESH,)),
    rc.DEMOTED: Cause("demoted", None, (Fix.WAIT,)),
    rc.RATE_LIMITED: Cause("quota_exhausted", None, (Fix.WAIT,)),
    rc.QUOTA_EXHAUSTED: Cause("quota_exhausted", None, (Fix.WAIT,)),
    rc.QUOTA_CAP: Cause("quota_exhausted", "Or raise the pool's cap.", (Fix.WAIT,)),
    rc.POOL_PAUSED: Cause("pool_paused", "Resume the pool to route.", (Fix.RESUME_POOL,)),
    rc.ASSIGNMENT_PAUSED: Cause("unassigned", "Resume the assignment on the account's page.", (Fix.MANAGE,)),
    UNASSIGNED: Cause("unassigned", "Assign it to a pool to route.", (Fix.MANAGE,)),
}
# Causes that lie with the pool or the assignment, not the account: named only when the account itself could
# route, because resuming a pool does not help an account that must be signed in again.
_POOL_LEVEL = frozenset({rc.POOL_PAUSED, rc.ASSIGNMENT_PAUSED})


def cause_of(code: str) -> Cause:
    if code in CAUSES:
        return CAUSES[code]
    if code.startswith(rc.ACCOUNT_PREFIX):  # a state without a row: at least say so, offer a new sign-in
        return Cause(code[len(rc.ACCOUNT_PREFIX) :], None, _SIGN_IN_AGAIN)
    return Cause(code)


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


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def candidate_of(facts: AccountFacts, assignment: AssignmentFacts) -> AccountCandidate:
    """The candidate the gateway's snapshot would build for this assignment (pooler/gateway/snapshot.py)."""
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
        strategy=Strategy.LEAST_USED,
        primary_cap_percent=facts.primary_cap_percent if primary is None else primary,
        secondary_cap_percent=facts.secondary_cap_percent if secondary is None else secondary,
        stale_after_seconds=stale_after,
    )


@dataclass(frozen=True)
class QuotaBlock:
    """The window that keeps an account out: the one whose reset is last among the blocking ones."""

    window_minutes: int
    resets_at: dt.datetime | None
    """As the quota bar shows it; None when the upstream gave no reset."""
    stale_at: dt.datetime | None
    """When the evidence goes stale before that reset (the gateway then tries the account again), else None."""


def quota_blocker(candidate: AccountCandidate, policy: PoolPolicy, now: float) -> QuotaBlock | None:
    stale_after = policy.stale_after_seconds
    found: tuple[float, WindowView] | None = None
    for window in candidate.windows:
        end = live_until(window, stale_after)
        if end <= now or block_reason(window.used_percent, cap_for(window.window_minutes, policy)) is None:
            continue
        if found is None or end > found[0]:
            found = (end, window)
    if found is None:
        return None
    end, window = found
    reset = window.resets_at
    stale = window.observed_at + stale_after if stale_after is not None else None
    return QuotaBlock(
        window.window_minutes,
        None if reset is None else dt.datetime.fromtimestamp(reset, dt.UTC),
        None if stale is None or (reset is not None and stale >= reset) else dt.datetime.fromtimestamp(stale, dt.UTC),
    )


def _blocked(
    code: str, candidate: AccountCandidate, policy: PoolPolicy, now: dt.datetime
) -> tuple[str, dt.datetime | None]:
    """The policy's sentence with its end, written as the quota bars write it."""
    text = explain(code) if code != UNASSIGNED else "Not assigned to any pool."
    until: dt.datetime | None = None
    if code == rc.DEMOTED and candidate.demoted_until is not None:
        until = dt.datetime.fromtimestamp(candidate.demoted_until, dt.UTC)
        text = f"{text} It routes again {moment_text(until, now)}."
    elif code in rc.QUOTA_REASONS:
        block = quota_blocker(candidate, policy, now.timestamp())
        if block is not None and block.resets_at is not None:
            until = block.resets_at
            text = f"{text} The {window_name(block.window_minutes)} window resets {moment_text(until, now)}."
        if block is not None and block.stale_at is not None:
            text += f" Its evidence goes stale {moment_text(block.stale_at, now)}; the gateway tries it again then."
    return text, until


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


def _account_cause(candidate: AccountCandidate, policy: PoolPolicy, request: SelectionRequest) -> str | None:
    """What would still keep the account out were its pool and assignment active."""
    return ineligibility(
        replace(candidate, assignment_status=AssignmentStatus.ACTIVE),
        replace(policy, pool_status=PoolStatus.ACTIVE),
        request,
    )


def account_readiness(facts: AccountFacts, now: dt.datetime, stale_after_seconds: float | None = None) -> Readiness:
    """Routable when the selection policy accepts the account in at least one of its pools.

    When it is not, the cause named is the one an operator can act on first: the account's own problem (asked of
    the policy as if every pool and assignment were active) before a paused pool or assignment, since resuming a
    pool does not make an account route that must first be signed in again.
    """
    if not facts.assignments:
        cause = CAUSES[UNASSIGNED]
        text = f"Not assigned to any pool. {cause.hint}"
        return Readiness(False, Level.BLOCKED, cause.category, text, code=UNASSIGNED, fixes=cause.fixes)
    now_ts = now.timestamp()
    request = SelectionRequest(now=now_ts)
    live: list[str] = []
    blocked: list[tuple[str, AccountCandidate, PoolPolicy, AssignmentFacts]] = []
    for assignment in facts.assignments:
        candidate = candidate_of(facts, assignment)
        policy = policy_of(facts, assignment, stale_after_seconds)
        code = ineligibility(candidate, policy, request)
        if code is None:
            live.append(assignment.pool_name)
            continue
        own = _account_cause(candidate, policy, request) if code in _POOL_LEVEL else None
        blocked.append((own or code, candidate, policy, assignment))
    if not live:
        return _not_routable(facts, blocked, now)
    notes = _notes(facts, now, stale_after_seconds)
    windows = [w for w in candidate_of(facts, facts.assignments[0]).windows if live_until(w, None) > now_ts]
    busiest = max(windows, key=lambda w: w.used_percent, default=None)
    head = f"Routable in {', '.join(sorted(live))}"
    if busiest is not None:
        head += f"; {window_name(busiest.window_minutes)} {busiest.used_percent:.0f}% used"
    if notes:
        head += f" ({'; '.join(notes)})"
    return Readiness(True, Level.WARN if notes else Level.OK, "routable", head, notes=tuple(notes))


def _not_routable(
    facts: AccountFacts, blocked: list[tuple[str, AccountCandidate, PoolPolicy, AssignmentFacts]], now: dt.datetime
) -> Readiness:
    account_level = [b for b in blocked if b[0] not in _POOL_LEVEL]
    code, candidate, policy, assignment = (account_level or blocked)[0]
    cause = cause_of(code)
    text, until = _blocked(code, candidate, policy, now)
    category, fixes, hint = cause.category, cause.fixes, cause.hint
    if code == rc.TOKEN_EXPIRED and not facts.has_refresh_token:
        # Nothing to refresh with: only a new login helps.
        category, fixes, hint = (
            "reauth",
            _SIGN_IN_AGAIN,
            "No refresh token is stored: relink it or replace its auth.json.",
        )
    if code == rc.POOL_PAUSED:
        text = f"Pool {assignment.pool_name} is not active."
    if hint:
        text = f"{text} {hint}"
    paused = sorted({a.pool_name for _, _, _, a in blocked if a.pool_status != PoolStatus.ACTIVE})
    if account_level and paused:
        text += f" (Pool {', '.join(paused)} is also not active.)"
    pool = assignment.pool_name if code == rc.POOL_PAUSED else None
    return Readiness(False, Level.BLOCKED, category, text, until, code=code, fixes=fixes, pool=pool)


_CATEGORY_WORDS = {
    "quota_exhausted": "quota-exhausted",
    "paused": "paused",
    "reauth": "need re-authentication",
    "refresh_failed": "failed refresh",
    "refresh_pending": "awaiting a token refresh",
    "demoted": "demoted",
    "unassigned": "not routed by assignment",
    "pool_paused": "in a paused pool",
    "deleted": "deleted",
}


def pool_summary(readiness: Sequence[Readiness], now: dt.datetime) -> str:
    """`3 of 5 accounts routable; 2 quota-exhausted, first back in 2h 05m (14:05 UTC); 1 paused`."""
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
            text += f", first back {moment_text(min(untils), now)}"
        parts.append(text)
    return "; ".join(parts)
