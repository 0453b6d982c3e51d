"""Pooled quota: what the pool as a whole has left, answered to clients on `/backend-api/wham/usage`.

For each window kind (5-hour, weekly) over the pool's *serving* accounts (assignment active, routable state,
token present):

    remaining_i = 0                                   if account i is spent (429 limit, or a live window
                                                      exhausted or at the pool's cap): it serves nothing
                = max(0, cap - used_i) / cap          with a live window of that kind (cap = the pool's cap
                                                      for the kind, at most 100: the pool stops routing there)
                = 1                                   with no live window of that kind (reset or never seen)
    used_percent = 100 * (1 - sum(w_i * remaining_i) / sum(w_i))      w_i = plan weight (see `scoring`)
    resets_at    = earliest reset among the live windows of that kind

A kind appears once any serving account has evidence of it. Like the upstream, the shorter window fills the
primary slot and the longer the secondary (a pool seeing only weekly windows reports it as primary).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pooler.selection import scoring
from pooler.selection.eligibility import static_reason
from pooler.selection.types import AccountCandidate, PoolPolicy
from pooler.selection.windows import cap_for, live_until, quota_block
from pooler.states import FIVE_HOUR_MINUTES, WEEKLY_MINUTES, PoolStatus

POOLED_KINDS = (FIVE_HOUR_MINUTES, WEEKLY_MINUTES)
# The Codex client parses plan_type into a closed enum: anything else would fail its whole usage fetch.
CODEX_PLAN_TYPES = frozenset(
    {
        "free",
        "go",
        "plus",
        "pro",
        "team",
        "business",
        "enterprise",
        "edu",
        "education",
        "guest",
        "free_workspace",
        "quorum",
        "k12",
        "self_serve_business_usage_based",
        "enterprise_cbp_usage_based",
    }
)
FALLBACK_PLAN_TYPE = "plus"


@dataclass(frozen=True, slots=True)
class PooledWindow:
    window_minutes: int
    used_percent: float
    """0..100, plan-weighted over the serving accounts."""
    resets_at: float | None
    """Earliest reset among the live windows of this kind; None when none is live."""


@dataclass(frozen=True, slots=True)
class PooledUsage:
    plan_type: str
    """The highest-weighted plan among serving accounts (a Codex plan name; `plus` when unknown)."""
    allowed: bool
    """The pool is active and some serving account is not spent."""
    limit_reached: bool
    """The pool has serving accounts and every one is spent (clients would get `usage_limit_reached`)."""
    windows: tuple[PooledWindow, ...]
    """Ascending window length."""
    serving_accounts: int
    available_accounts: int
    """Serving accounts that are not spent."""


def pooled_usage(
    policy: PoolPolicy, candidates: Iterable[AccountCandidate], now: float, stale_after_seconds: float | None = None
) -> PooledUsage:
    stale = stale_after_seconds if stale_after_seconds is not None else policy.stale_after_seconds
    total_weight = 0.0
    weighted_remaining = dict.fromkeys(POOLED_KINDS, 0.0)
    earliest: dict[int, float | None] = dict.fromkeys(POOLED_KINDS)
    seen: set[int] = set()
    serving = available = 0
    best_plan: str | None = None
    best_weight = -1.0
    for candidate in candidates:
        if static_reason(candidate) is not None:
            continue
        serving += 1
        weight = scoring.plan_weight(candidate.plan_type)
        total_weight += weight
        plan = (candidate.plan_type or "").lower()
        if plan in CODEX_PLAN_TYPES and weight > best_weight:
            best_plan, best_weight = plan, weight
        limited = candidate.limited_until is not None and candidate.limited_until > now
        spent = limited or quota_block(candidate.windows, policy, now, stale)[0] is not None
        if not spent:
            available += 1
        for kind in POOLED_KINDS:
            used: float | None = None
            for window in candidate.windows:
                if window.window_minutes != kind:
                    continue
                seen.add(kind)
                if live_until(window, stale) <= now:
                    continue
                used = window.used_percent if used is None else max(used, window.used_percent)
                reset = window.resets_at
                if reset is not None and reset > now:
                    current = earliest[kind]
                    earliest[kind] = reset if current is None else min(current, reset)
            weighted_remaining[kind] += weight * _remaining_fraction(spent, used, cap_for(kind, policy))
    windows = tuple(
        PooledWindow(
            window_minutes=kind,
            used_percent=100.0 * (1.0 - weighted_remaining[kind] / total_weight) if total_weight else 0.0,
            resets_at=earliest[kind],
        )
        for kind in POOLED_KINDS
        if kind in seen
    )
    limit_reached = serving > 0 and available == 0
    return PooledUsage(
        plan_type=best_plan or FALLBACK_PLAN_TYPE,
        allowed=policy.pool_status == PoolStatus.ACTIVE and available > 0,
        limit_reached=limit_reached,
        windows=windows,
        serving_accounts=serving,
        available_accounts=available,
    )


def _remaining_fraction(spent: bool, used: float | None, cap: float) -> float:
    if spent:
        return 0.0
    if used is None:
        return 1.0
    cap = min(cap, 100.0)
    if cap <= 0.0:
        return 0.0
    return max(0.0, min(1.0, (cap - used) / cap))


def _window_payload(window: PooledWindow, now: float, limit_reached: bool) -> dict[str, int]:
    seconds = window.window_minutes * 60
    # The Codex client parses these four as integers, none optional: a window with no live evidence resets
    # at the latest one window length from now.
    reset_at = int(window.resets_at) if window.resets_at is not None else int(now) + seconds
    used = max(0, min(100, round(window.used_percent)))
    if used == 100 and not limit_reached and window.used_percent < 100.0:
        used = 99  # rounding must not announce a spent pool that still serves
    return {
        "used_percent": used,
        "limit_window_seconds": seconds,
        "reset_after_seconds": max(0, reset_at - int(now)),
        "reset_at": reset_at,
    }


def pooled_usage_payload(usage: PooledUsage, now: float) -> dict[str, Any]:
    """The Codex usage API JSON shape (`/backend-api/wham/usage`, `/api/codex/usage`)."""
    slots = [_window_payload(w, now, usage.limit_reached) for w in usage.windows[:2]]
    return {
        "plan_type": usage.plan_type,
        "rate_limit": {
            "allowed": usage.allowed,
            "limit_reached": usage.limit_reached,
            "primary_window": slots[0] if slots else None,
            "secondary_window": slots[1] if len(slots) > 1 else None,
        },
    }
