"""Why a conversation's request went to the account it did, when that is not simply "its sticky account again".

A prompt cache lives in one account: every move of a conversation to another account starts its cache cold. The
ext_proc knows at pick time whether the session had a sticky account and why selection left it; it records that
as the request's `switch_cause` (routing metadata, then the request_logs row; metadata only). Pure functions over
plain data: the pick gives `pick_cause`, the access log refines a failed-over cause with what the failed attempt
answered (`refine_cause`), the cache-health view and alert count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pooler.gateway.snapshot import PoolEntry, Sticky
from pooler.selection import reasons
from pooler.selection.eligibility import ineligibility
from pooler.selection.types import SelectionRequest

NO_SESSION: Final = "no_session"
"""The request named no conversation (no session header, no prompt_cache_key): nothing can keep it on one account."""
FIRST_TURN: Final = "first_turn"
"""The conversation's first request seen (no sticky account yet): a cold cache, but not a move."""
STICKY_EXPIRED: Final = "sticky_expired"
"""The session's sticky account had expired (the pool's sticky TTL) and another account was picked."""
ACCOUNT_SPENT: Final = "account_spent"
"""The sticky account is quota-spent (a window at its cap or the upstream's 429 usage limit)."""
ACCOUNT_DEMOTED: Final = "account_demoted"
"""The sticky account is briefly demoted after upstream errors (5xx, connect failures)."""
ACCOUNT_DEACTIVATED: Final = "account_deactivated"
"""The sticky account no longer serves: paused, re-auth required, deleted, token rejected, removed from the pool."""
ACCOUNT_BUSY: Final = "account_busy"
"""The sticky account is at the pool's concurrency cap per account."""
FAILED_OVER: Final = "failed_over"
"""An earlier attempt of this very request failed on the sticky account (refined by that attempt's status)."""
OTHER: Final = "other"
"""Selection left an eligible sticky account (a file pinned to another account, ...)."""

SWITCH_CAUSES: Final = (
    ACCOUNT_SPENT,
    ACCOUNT_DEMOTED,
    ACCOUNT_DEACTIVATED,
    ACCOUNT_BUSY,
    FAILED_OVER,
    STICKY_EXPIRED,
    NO_SESSION,
    FIRST_TURN,
    OTHER,
)
"""Every cause, in the order the admin lists them."""
CAUSE_TEXT: Final = {
    ACCOUNT_SPENT: "its account was quota-spent",
    ACCOUNT_DEMOTED: "its account was demoted after upstream errors",
    ACCOUNT_DEACTIVATED: "its account stopped serving (paused, re-auth, removed, token rejected)",
    ACCOUNT_BUSY: "its account was at the concurrency cap",
    FAILED_OVER: "an attempt on its account failed in this request",
    STICKY_EXPIRED: "its stickiness expired (the pool's sticky TTL)",
    NO_SESSION: "the client sent no session header or prompt_cache_key",
    FIRST_TURN: "the conversation's first request (not a move)",
    OTHER: "selection left an eligible account (e.g. a file lives elsewhere)",
}
"""One line per cause for the admin."""
MOVES: Final = frozenset(SWITCH_CAUSES) - {FIRST_TURN, NO_SESSION}
"""Causes that moved a conversation away from an account that held its cache (the alert names the dominant one)."""
_CARRIED: Final = frozenset({FIRST_TURN, NO_SESSION})
"""A cause a retry keeps: the request is still its conversation's first (or has none)."""

_REASON_CAUSES: Final = {
    **{r: ACCOUNT_SPENT for r in reasons.QUOTA_REASONS},
    reasons.DEMOTED: ACCOUNT_DEMOTED,
    reasons.CONCURRENCY_CAP: ACCOUNT_BUSY,
    reasons.ALREADY_TRIED: FAILED_OVER,
    reasons.ASSIGNMENT_PAUSED: ACCOUNT_DEACTIVATED,
    reasons.NO_TOKEN: ACCOUNT_DEACTIVATED,
    reasons.TOKEN_EXPIRED: ACCOUNT_DEACTIVATED,
    reasons.REFRESH_REQUESTED: ACCOUNT_DEACTIVATED,
}


def cause_of_reason(reason: str | None) -> str:
    """The switch cause for the ineligibility reason of the sticky account (None: it was not in the pool)."""
    if reason is None:
        return ACCOUNT_DEACTIVATED
    if reason.startswith(reasons.ACCOUNT_PREFIX):
        return ACCOUNT_DEACTIVATED
    return _REASON_CAUSES.get(reason, OTHER)


def pick_cause(
    *,
    has_session: bool,
    previous_cause: str | None,
    sticky_account: int | None,
    sticky_live: bool,
    picked: int,
    sticky_reason: str | None,
) -> str | None:
    """The cause of this attempt's pick, None when the session stayed on its sticky account.

    `previous_cause`: what an earlier attempt of the request recorded; `sticky_account`: the session's sticky
    account as the snapshot holds it (None: none known), `sticky_live`: it has not expired; `sticky_reason`: the
    ineligibility reason of the sticky account (only read when the session moved)."""
    if not has_session:
        return NO_SESSION
    if previous_cause in _CARRIED:
        return previous_cause
    if sticky_account is None:
        return FIRST_TURN
    if picked == sticky_account:
        return None
    if not sticky_live:
        return STICKY_EXPIRED
    return cause_of_reason(sticky_reason)


def refine_cause(cause: str | None, attempt_statuses: Sequence[int | None]) -> str | None:
    """A failed-over cause named by what the failed attempt answered (the access log knows it, the pick did not):
    a 429 is a spent account, a 401/403 one that no longer serves, a 5xx or no answer a demotion."""
    if cause != FAILED_OVER or not attempt_statuses:
        return cause
    status = attempt_statuses[0]
    if status == 429:
        return ACCOUNT_SPENT
    if status in (401, 402, 403):
        return ACCOUNT_DEACTIVATED
    if status is None or status == 0 or status >= 500:
        return ACCOUNT_DEMOTED
    return cause


def attempt_cause(
    pool: PoolEntry,
    wanted: SelectionRequest,
    *,
    has_session: bool,
    previous_cause: str | None,
    sticky: Sticky | None,
    tried: Sequence[int],
    picked: int,
) -> str | None:
    """`pick_cause` for one attempt of the ext_proc: the sticky account's ineligibility is only worked out when
    the session moved (one candidate scan, on the rare path)."""
    sticky_account = sticky.account_id if sticky is not None else None
    reason: str | None = None
    if has_session and previous_cause not in _CARRIED and sticky_account is not None and picked != sticky_account:
        candidate = next((c for c in pool.candidates if c.account_id == sticky_account), None)
        if candidate is not None:
            reason = ineligibility(candidate, pool.policy, wanted)
            if reason == reasons.ALREADY_TRIED and sticky_account not in tried:
                reason = "file_pinned"  # excluded because a referenced file lives in another account
    return pick_cause(
        has_session=has_session,
        previous_cause=previous_cause,
        sticky_account=sticky_account,
        sticky_live=sticky is not None and sticky.expires_at > wanted.now,
        picked=picked,
        sticky_reason=reason,
    )
