"""`select_account`: eligibility -> stickiness -> strategy, once per upstream attempt.

Failure answers, when nothing passes:
- `pool_paused` (pool not active) / `model_not_allowed` (model off the pool's allow-list);
- `usage_limit_reached` with the earliest reset, when every *serving* account (assignment active, routable
  state, has a token) is spent: rate-limited after a 429, or a live window exhausted or at the pool's cap;
  out-of-service accounts (paused, reauth required, ...) do not stand in the way, since clients can only wait
  for a reset;
- `concurrency_cap` when some account could serve but every such account is at the pool's per-account
  concurrency cap (busy, not unfit: the client is told to retry shortly);
- `no_eligible_account` otherwise: some serving account is out for a passing reason (demotion, expired or
  rejected token, already tried for this request), or the pool has no serving account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pooler.selection import reasons
from pooler.selection.index import PoolIndex, PoolView
from pooler.selection.strategies import StrategyState
from pooler.selection.types import AccountCandidate, PoolPolicy, Selection, SelectionRequest, worker_cap

_POOL_PAUSED = Selection(None, reasons.POOL_PAUSED)
_MODEL_NOT_ALLOWED = Selection(None, reasons.MODEL_NOT_ALLOWED)
_NO_ELIGIBLE = Selection(None, reasons.NO_ELIGIBLE_ACCOUNT)
_AT_CAP = Selection(None, reasons.CONCURRENCY_CAP)


def build_index(policy: PoolPolicy, candidates: Sequence[AccountCandidate] | PoolIndex) -> PoolIndex:
    """Reuse an index built for this policy; otherwise (a plain sequence, or another policy) build one."""
    if isinstance(candidates, PoolIndex):
        if candidates.policy is policy or candidates.policy == policy:
            return candidates
        return PoolIndex(policy, candidates.candidates)
    return PoolIndex(policy, candidates)


def select_account(
    policy: PoolPolicy,
    candidates: Sequence[AccountCandidate] | PoolIndex,
    request: SelectionRequest,
    state: StrategyState,
) -> Selection:
    """Choose the account for one upstream attempt. Pass a `PoolIndex` on the hot path (a plain sequence is
    indexed on every call)."""
    index = build_index(policy, candidates)
    if not index.active:
        return _POOL_PAUSED
    allowed = index.allowed_models
    if allowed is not None and request.model is not None and request.model not in allowed:
        return _MODEL_NOT_ALLOWED
    stale_after = request.stale_after_seconds
    if stale_after is None:
        stale_after = policy.stale_after_seconds
    view = index.view(request.now, stale_after)
    cap = worker_cap(index.concurrency_cap, request.cap_workers) if request.enforce_cap else None
    excluded = index.excluded_for(request.model, request.now)
    if excluded:
        # The upstream excluded these accounts for this model (usage_not_included, a per-model limit family): for
        # this pick they are as good as tried.
        request = replace(request, exclude=request.exclude | excluded)

    sticky = request.sticky_account_id
    full = False
    if sticky is not None and sticky in view.members and sticky not in request.exclude:
        if cap is None or request.in_flight.get(sticky, 0) < cap:
            return Selection(sticky, None, None, True, False)
        # The session's account is busy, not unfit: this request overflows, the session keeps its account.
        full = True

    chosen = index.routing.pick(view, request, cap, state)
    if chosen is not None:
        return Selection(chosen, None, None, False, sticky is not None and not full, full)
    return _failure(view, request, cap)


def _failure(view: PoolView, request: SelectionRequest, cap: int | None) -> Selection:
    if not view.order and view.quota_blocked and not view.transient_blocked:
        return Selection(None, reasons.USAGE_LIMIT_REACHED, view.earliest_reset)
    if cap is not None and any(aid not in request.exclude for aid in view.order):
        # The strategy passed over an eligible, untried account: only its cap can have stopped it.
        return _AT_CAP
    return _NO_ELIGIBLE
