"""Account lifecycle: the allowed state transitions, in one place, and the pure decisions that drive them.

The states are `pooler.states.AccountState`. Credential states (`refresh_due`, `refreshing`, `refresh_failed`,
`reauth_required`) are driven by token refresh; `quota_exhausted` is derived from quota evidence; `paused` and
`deleted` belong to operators. `transition()` is the only writer of `UpstreamAccount.state`: it checks the
table below, writes an audit event and bumps the routing version so every gateway reloads its snapshot.

The decision functions below take plain values (no Session, no clock): the services pass `now` in, so tests
drive time explicitly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.errors import PoolerError
from pooler.models import UpstreamAccount, utcnow
from pooler.states import AccountState
from pooler.versions import bump_routing_version

S = AccountState

# Every state may be paused or deleted by an operator, and any live state may turn out to need re-auth or be
# found deactivated by the upstream.
_ANY_LIVE = {S.PAUSED, S.DELETED, S.REAUTH_REQUIRED, S.DEACTIVATED}
ALLOWED_TRANSITIONS: dict[AccountState, frozenset[AccountState]] = {
    S.ACTIVE: frozenset(
        _ANY_LIVE | {S.REFRESH_DUE, S.REFRESHING, S.REFRESH_FAILED, S.QUOTA_EXHAUSTED},
    ),
    S.REFRESH_DUE: frozenset(_ANY_LIVE | {S.ACTIVE, S.REFRESHING, S.REFRESH_FAILED}),
    S.REFRESHING: frozenset(_ANY_LIVE | {S.ACTIVE, S.REFRESH_DUE, S.REFRESH_FAILED}),
    S.REFRESH_FAILED: frozenset(_ANY_LIVE | {S.ACTIVE, S.REFRESH_DUE, S.REFRESHING}),
    S.QUOTA_EXHAUSTED: frozenset(_ANY_LIVE | {S.ACTIVE, S.REFRESH_DUE, S.REFRESHING, S.REFRESH_FAILED}),
    # Re-auth (a fresh auth.json or OAuth onboarding) brings an account back; nothing else does.
    S.REAUTH_REQUIRED: frozenset({S.ACTIVE, S.PAUSED, S.DELETED}),
    # A person acted (reactivated the workspace, relinked the account): an operator puts it back.
    S.DEACTIVATED: frozenset({S.ACTIVE, S.PAUSED, S.DELETED, S.REAUTH_REQUIRED}),
    S.PAUSED: frozenset({S.ACTIVE, S.DELETED, S.REAUTH_REQUIRED}),
    S.DELETED: frozenset(),
}

# States the gateway may pick from (it also checks token expiry, demotion and quota itself). A refresh in
# progress or a transient refresh failure does not make a still-valid access token unusable.
ROUTABLE_STATES = frozenset({S.ACTIVE, S.REFRESH_DUE, S.REFRESHING, S.REFRESH_FAILED})
# States whose tokens the scheduler keeps fresh (paused accounts too, so resuming one just works).
REFRESHABLE_STATES = frozenset(
    {S.ACTIVE, S.REFRESH_DUE, S.REFRESHING, S.REFRESH_FAILED, S.QUOTA_EXHAUSTED, S.PAUSED},
)
# States whose quota the scheduler polls.
POLLABLE_STATES = frozenset({S.ACTIVE, S.REFRESH_DUE, S.REFRESHING, S.REFRESH_FAILED, S.QUOTA_EXHAUSTED})

DEFAULT_REFRESH_HORIZON = dt.timedelta(hours=24)
MAX_REFRESH_AGE = dt.timedelta(days=8)
"""Codex itself refreshes when `last_refresh` is older than 8 days."""
REFRESH_BACKOFF_BASE = dt.timedelta(minutes=1)
REFRESH_BACKOFF_CAP = dt.timedelta(hours=1)
POLL_BACKOFF_BASE = dt.timedelta(minutes=1)
POLL_BACKOFF_CAP = dt.timedelta(minutes=30)


class TransitionError(PoolerError):
    """A state change the lifecycle table does not allow (a programming or operator error, never upstream)."""


def can_transition(old: AccountState | str, new: AccountState | str) -> bool:
    return S(new) in ALLOWED_TRANSITIONS[S(old)]


def transition(
    session: Session,
    account: UpstreamAccount,
    new_state: AccountState,
    *,
    actor: Actor,
    reason: str | None,
    now: dt.datetime | None = None,
) -> bool:
    """Moves `account` to `new_state` inside the caller's transaction. Returns False when already there.

    Raises TransitionError when the table forbids the move. `reason` is a short safe code, never a secret.
    """
    old = S(account.state)
    new = S(new_state)
    if old == new:
        return False
    if not can_transition(old, new):
        raise TransitionError(f"account {account.id}: {old} -> {new} is not an allowed transition")
    account.state = str(new)
    account.state_reason = reason
    account.state_changed_at = now or utcnow()
    audit.record(
        session,
        actor,
        action="account.state_change",
        target_type="account",
        target_id=account.id,
        target_label=account.label,
        details={"from": str(old), "to": str(new), "reason": reason},
    )
    bump_routing_version(session)
    return True


def is_routable_state(state: AccountState | str) -> bool:
    return S(state) in ROUTABLE_STATES


# ---- pure decisions -------------------------------------------------------------------------------------------


def refresh_due_reason(
    *,
    now: dt.datetime,
    access_token_expires_at: dt.datetime | None,
    last_refresh_at: dt.datetime | None,
    refresh_requested_at: dt.datetime | None,
    horizon: dt.timedelta = DEFAULT_REFRESH_HORIZON,
    max_age: dt.timedelta = MAX_REFRESH_AGE,
    state: str | None = None,
) -> str | None:
    """Why a refresh is due now (`requested`, `state`, `expiring`, `expiry_unknown`, `stale`), or None."""
    if refresh_requested_at is not None and (last_refresh_at is None or refresh_requested_at >= last_refresh_at):
        # A 401 seen after the latest refresh: the gateway asks for new credentials.
        return "requested"
    if state == S.REFRESH_DUE:
        # Imported with an expired token, or an operator asked: refresh at the next tick.
        return "state"
    if access_token_expires_at is not None and access_token_expires_at - now <= horizon:
        return "expiring"
    if last_refresh_at is None:
        # Neither an expiry nor a refresh time: the token is opaque and of unknown age.
        return "expiry_unknown" if access_token_expires_at is None else None
    if now - last_refresh_at >= max_age:
        return "stale"
    return None


def exponential_backoff(failures: int, base: dt.timedelta, cap: dt.timedelta) -> dt.timedelta:
    """base * 2^(failures-1), capped: 1, 2, 4, ... for failures 1, 2, 3, ..."""
    if failures <= 0:
        return dt.timedelta(0)
    # Cap the exponent first so a long failure streak cannot overflow.
    exponent = min(failures - 1, 30)
    scaled: dt.timedelta = base * (2**exponent)
    return min(scaled, cap)


def refresh_backoff(failures: int) -> dt.timedelta:
    return exponential_backoff(failures, REFRESH_BACKOFF_BASE, REFRESH_BACKOFF_CAP)


def poll_backoff(failures: int) -> dt.timedelta:
    return exponential_backoff(failures, POLL_BACKOFF_BASE, POLL_BACKOFF_CAP)


@dataclass(frozen=True)
class WindowEvidence:
    """What the derivation needs of one quota window (a QuotaWindow row, or anything shaped like it)."""

    used_percent: float
    resets_at: dt.datetime | None
    observed_at: dt.datetime


def is_stale(observed_at: dt.datetime, now: dt.datetime, stale_after: dt.timedelta) -> bool:
    return now - observed_at > stale_after


def exhausted_until(
    windows: Iterable[WindowEvidence], now: dt.datetime, stale_after: dt.timedelta
) -> dt.datetime | None:
    """When a full window says the account is spent, the time it frees up (the latest such reset); else None.

    A full window with a reset in the future is exhausted however old the evidence (limits do not un-reach
    early). A full window without a known reset counts only while the evidence is fresh, so failing polls
    make evidence stale, never exhausted. An account with no windows at all is never exhausted. When the
    reset time is unknown the account is exhausted until the evidence goes stale.
    """
    until: dt.datetime | None = None
    for window in windows:
        if window.used_percent < 100.0:
            continue
        if window.resets_at is not None:
            candidate = window.resets_at
        elif not is_stale(window.observed_at, now, stale_after):
            candidate = window.observed_at + stale_after
        else:
            continue
        if candidate > now and (until is None or candidate > until):
            until = candidate
    return until


def quota_state_change(state: AccountState | str, exhausted: bool) -> AccountState | None:
    """The quota-driven transition for an account in `state`, or None. Only active <-> quota_exhausted."""
    current = S(state)
    if exhausted and current == S.ACTIVE:
        return S.QUOTA_EXHAUSTED
    if not exhausted and current == S.QUOTA_EXHAUSTED:
        return S.ACTIVE
    return None
