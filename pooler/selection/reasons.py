"""Ineligibility reason codes: one concept, one name (selection, metrics and the admin UI share them)."""

from __future__ import annotations

from typing import Final

from pooler.states import AccountState

POOL_PAUSED: Final = "pool_paused"
MODEL_NOT_ALLOWED: Final = "model_not_allowed"
MODEL_NOT_INCLUDED: Final = "model_not_included"
"""The upstream told this account it cannot serve this model (429 usage_not_included, or a per-model limit)."""
ASSIGNMENT_PAUSED: Final = "assignment_paused"
NO_TOKEN: Final = "no_token"
TOKEN_EXPIRED: Final = "token_expired"
REFRESH_REQUESTED: Final = "refresh_requested"
DEMOTED: Final = "demoted"
RATE_LIMITED: Final = "rate_limited"
QUOTA_EXHAUSTED: Final = "quota_exhausted"
QUOTA_CAP: Final = "quota_cap"
CONCURRENCY_CAP: Final = "concurrency_cap"
ALREADY_TRIED: Final = "already_tried"
ACCOUNT_PREFIX: Final = "account_"
"""`account_<state>` for every state that is not routable (`account_paused`, `account_reauth_required`, ...)."""

# Selection errors (Selection.error) that are not per-account reasons.
USAGE_LIMIT_REACHED: Final = "usage_limit_reached"
NO_ELIGIBLE_ACCOUNT: Final = "no_eligible_account"

ROUTABLE_STATES: Final = frozenset(
    {
        AccountState.ACTIVE.value,
        # The token stays valid until it expires (checked separately), so these keep serving.
        AccountState.REFRESH_DUE.value,
        AccountState.REFRESHING.value,
        # Derived by the scheduler from the same quota evidence the windows carry; the windows are time-aware
        # (a passed reset frees the account at once) while the state lags until the next scheduler pass.
        AccountState.QUOTA_EXHAUSTED.value,
    }
)

QUOTA_REASONS: Final = frozenset({RATE_LIMITED, QUOTA_EXHAUSTED, QUOTA_CAP})
"""Reasons that mean "spent until a reset": when only these remain, clients get `usage_limit_reached`."""

_EXPLANATIONS: Final = {
    POOL_PAUSED: "The pool is not active.",
    MODEL_NOT_ALLOWED: "The requested model is not on the pool's allow-list.",
    ASSIGNMENT_PAUSED: "The account's assignment to this pool is paused.",
    NO_TOKEN: "The account has no access token.",
    TOKEN_EXPIRED: "The account's access token has expired and awaits refresh.",
    REFRESH_REQUESTED: "The upstream rejected the account's token (401); it is skipped until refreshed.",
    DEMOTED: "The account is briefly demoted after upstream errors.",
    RATE_LIMITED: "The upstream reported the account's usage limit reached (429); skipped until its reset.",
    QUOTA_EXHAUSTED: "A quota window of the account is fully used until its reset.",
    QUOTA_CAP: "A quota window of the account is at or above the pool's cap.",
    CONCURRENCY_CAP: "The account is serving the pool's maximum number of concurrent streams.",
    ALREADY_TRIED: "The account was already tried for this request.",
    USAGE_LIMIT_REACHED: "Every serving account of the pool is spent until a quota reset.",
    NO_ELIGIBLE_ACCOUNT: "No account of the pool can serve the request right now.",
    ACCOUNT_PREFIX + AccountState.PAUSED: "The account is paused.",
    ACCOUNT_PREFIX + AccountState.REAUTH_REQUIRED: "The account must be signed in again.",
    ACCOUNT_PREFIX + AccountState.REFRESH_FAILED: "Refreshing the account's token failed.",
    ACCOUNT_PREFIX + AccountState.DELETED: "The account is deleted.",
}


def account_state_reason(state: str) -> str:
    return ACCOUNT_PREFIX + state


def explain(reason: str) -> str:
    """A human sentence for a reason code (the admin's readiness line)."""
    text = _EXPLANATIONS.get(reason)
    if text is not None:
        return text
    if reason.startswith(ACCOUNT_PREFIX):
        return f"The account is in state {reason[len(ACCOUNT_PREFIX) :]!r}, which does not serve requests."
    return f"Not eligible ({reason})."
