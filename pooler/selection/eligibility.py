"""Whether one account may serve one request, and why not: the reference rules, checked in this order.

pool active -> model allowed -> assignment active -> account state routable -> token present -> model not
excluded for the account -> token not expired -> not refresh-flagged -> not demoted -> not rate-limited -> live
windows under caps -> concurrency under cap -> not already tried. The first failing check names the reason.
`PoolIndex` precomputes the same rules per snapshot for the hot path (model exclusions per request, like tried
accounts); tests hold both to agreement.
"""

from __future__ import annotations

from pooler.selection import reasons
from pooler.selection.reasons import explain
from pooler.selection.types import AccountCandidate, PoolPolicy, SelectionRequest, effective_stale_after, worker_cap
from pooler.selection.windows import quota_block
from pooler.states import AssignmentStatus, PoolStatus

__all__ = ["explain", "ineligibility", "model_allowed", "model_excluded", "static_reason"]


def model_allowed(policy: PoolPolicy, model: str | None) -> bool:
    return policy.allowed_models is None or model is None or model in policy.allowed_models


def model_excluded(candidate: AccountCandidate, model: str | None, now: float) -> bool:
    """The upstream told this account it cannot serve `model` (for now)."""
    if model is None:
        return False
    return any(m == model and (until is None or until > now) for m, until in candidate.excluded_models)


def static_reason(candidate: AccountCandidate) -> str | None:
    """Reasons that hold for the whole life of a snapshot whatever the clock says: the account is out of
    service (operator or lifecycle), not merely busy or spent."""
    if candidate.assignment_status != AssignmentStatus.ACTIVE:
        return reasons.ASSIGNMENT_PAUSED
    if candidate.state not in reasons.ROUTABLE_STATES:
        return reasons.account_state_reason(candidate.state)
    if not candidate.has_token:
        return reasons.NO_TOKEN
    return None


def ineligibility(candidate: AccountCandidate, policy: PoolPolicy, request: SelectionRequest) -> str | None:
    """The reason code why `candidate` may not serve `request`, or None if it may."""
    now = request.now
    if policy.pool_status != PoolStatus.ACTIVE:
        return reasons.POOL_PAUSED
    if not model_allowed(policy, request.model):
        return reasons.MODEL_NOT_ALLOWED
    found = static_reason(candidate)
    if found is not None:
        return found
    if model_excluded(candidate, request.model, now):
        return reasons.MODEL_NOT_INCLUDED
    if candidate.access_token_expires_at is not None and candidate.access_token_expires_at <= now:
        return reasons.TOKEN_EXPIRED
    if candidate.refresh_requested:
        return reasons.REFRESH_REQUESTED
    if candidate.demoted_until is not None and candidate.demoted_until > now:
        return reasons.DEMOTED
    if candidate.limited_until is not None and candidate.limited_until > now:
        return reasons.RATE_LIMITED
    quota, _ = quota_block(candidate.windows, policy, now, effective_stale_after(policy, request))
    if quota is not None:
        return quota
    cap = worker_cap(policy.max_concurrency_per_account, request.cap_workers)
    if cap is not None and request.enforce_cap and request.in_flight.get(candidate.account_id, 0) >= cap:
        return reasons.CONCURRENCY_CAP
    if candidate.account_id in request.exclude:
        return reasons.ALREADY_TRIED
    return None
