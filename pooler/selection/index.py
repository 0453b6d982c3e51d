"""`PoolIndex`: one pool's candidates prepared once per snapshot reload, so a selection touches few of them.

Eligibility has three layers:
- *static* within a snapshot (assignment, lifecycle state, token presence): decided once, here;
- *time-based* (token expiry, demotion, 429 limit, quota windows and their resets/staleness): every such
  condition flips only at a known instant, so a `PoolView` (eligible accounts in strategy order, plus the
  failure summary) is computed at the first request after an instant and reused until the next one;
- *per request* (already tried, concurrency): checked while walking the view, usually on its first entry.
"""

from __future__ import annotations

from collections.abc import Iterable

from pooler.selection import scoring
from pooler.selection.eligibility import static_reason
from pooler.selection.strategies import RoutingStrategy, ViewOrder, strategy_for
from pooler.selection.types import AccountCandidate, PoolPolicy
from pooler.selection.windows import INF, block_reason, cap_for
from pooler.states import WEEKLY_MINUTES, PoolStatus

# (window_minutes, used_percent, resets_at or INF, observed_at, cap percent)
_Window = tuple[int, float, float, float, float]


class _Prepared:
    """What the time-based layer needs of one candidate, with None times turned into 0/INF once."""

    __slots__ = (
        "account_id",
        "demoted_until",
        "limited_until",
        "priority",
        "refresh_requested",
        "token_until",
        "weight",
        "windows",
    )

    def __init__(self, candidate: AccountCandidate, policy: PoolPolicy) -> None:
        self.account_id = candidate.account_id
        self.priority = candidate.priority
        self.weight = scoring.plan_weight(candidate.plan_type)
        expires = candidate.access_token_expires_at
        self.token_until = INF if expires is None else expires
        self.demoted_until = candidate.demoted_until or 0.0
        self.limited_until = candidate.limited_until or 0.0
        self.refresh_requested = candidate.refresh_requested
        self.windows: tuple[_Window, ...] = tuple(
            (
                w.window_minutes,
                w.used_percent,
                INF if w.resets_at is None else w.resets_at,
                w.observed_at,
                cap_for(w.window_minutes, policy),
            )
            for w in candidate.windows
        )


class PoolView:
    """The pool as seen during [computed_at, valid_until): eligible accounts (before per-request checks)."""

    __slots__ = (
        "computed_at",
        "earliest_reset",
        "members",
        "order",
        "quota_blocked",
        "ring",
        "scores",
        "stale_after",
        "transient_blocked",
        "valid_until",
    )

    def __init__(
        self,
        computed_at: float,
        valid_until: float,
        stale_after: float | None,
        order: tuple[int, ...],
        ring: tuple[int, ...],
        quota_blocked: int,
        transient_blocked: int,
        earliest_reset: float | None,
        scores: tuple[float, ...] = (),
    ) -> None:
        self.computed_at = computed_at
        self.valid_until = valid_until
        self.stale_after = stale_after
        self.order = order
        """Eligible account ids in the strategy's `ViewOrder` (least-used: best first; primary-first: priority)."""
        self.scores = scores
        """`ViewOrder.SCORE` only: each `order` entry's score (same positions), for the tie band; else empty."""
        self.ring = ring
        """Eligible account ids ascending (round-robin ring, random pool)."""
        self.members = frozenset(order)
        self.quota_blocked = quota_blocked
        """Serving accounts that are spent (429 limit, exhausted or capped window), whatever else holds."""
        self.transient_blocked = transient_blocked
        """Serving accounts out for another passing reason (expired token, 401 refresh, demotion)."""
        self.earliest_reset = earliest_reset


class PoolIndex:
    """Built once per snapshot reload (per pool); cheap to query many times. Not shared across threads
    without care: the cached view is replaced wholesale, so a race costs only a duplicate computation."""

    __slots__ = (
        "_live",
        "_view",
        "active",
        "allowed_models",
        "candidates",
        "concurrency_cap",
        "excluded_models",
        "policy",
        "routing",
        "strategy",
    )

    def __init__(self, policy: PoolPolicy, candidates: Iterable[AccountCandidate]) -> None:
        self.policy = policy
        self.candidates: tuple[AccountCandidate, ...] = tuple(sorted(candidates, key=lambda c: c.account_id))
        self.active = policy.pool_status == PoolStatus.ACTIVE
        self.allowed_models = policy.allowed_models
        self.concurrency_cap = policy.max_concurrency_per_account
        self.strategy = policy.strategy
        self.routing: RoutingStrategy = strategy_for(policy.strategy)
        # Out-of-service accounts never enter a view: they are neither eligible nor "spent".
        self._live: tuple[_Prepared, ...] = tuple(
            _Prepared(c, policy) for c in self.candidates if static_reason(c) is None
        )
        self._view: PoolView | None = None
        self.excluded_models: dict[str, tuple[tuple[int, float | None], ...]] = {}
        """model -> (account, until) the upstream said cannot serve it: empty in the common case, so a
        selection pays one truthiness test."""
        for c in self.candidates:
            for model, until in c.excluded_models:
                self.excluded_models[model] = (*self.excluded_models.get(model, ()), (c.account_id, until))

    def excluded_for(self, model: str | None, now: float) -> frozenset[int]:
        """Accounts that cannot serve `model` now (per-request, like already-tried accounts)."""
        if not self.excluded_models or model is None:
            return frozenset()
        found = self.excluded_models.get(model)
        if not found:
            return frozenset()
        return frozenset(a for a, until in found if until is None or until > now)

    def view(self, now: float, stale_after: float | None) -> PoolView:
        view = self._view
        if view is not None and view.computed_at <= now < view.valid_until and view.stale_after == stale_after:
            return view
        view = self._compute(now, stale_after)
        self._view = view
        return view

    def _compute(self, now: float, stale_after: float | None) -> PoolView:
        next_change = INF
        quota_blocked = transient_blocked = 0
        earliest = INF
        view_order = self.routing.order
        least_used = view_order is ViewOrder.SCORE
        ranked: list[tuple[float, int, int]] = []  # (sort value, priority, account id)
        ring: list[int] = []
        for p in self._live:
            transient = p.refresh_requested
            if p.token_until <= now:
                transient = True
            elif p.token_until < next_change:
                next_change = p.token_until
            if p.demoted_until > now:
                transient = True
                next_change = min(next_change, p.demoted_until)
            spent = False
            free_at = 0.0
            if p.limited_until > now:
                spent = True
                free_at = p.limited_until
                next_change = min(next_change, free_at)
            used = 0.0
            weekly_reset = INF
            for minutes, used_percent, resets_at, observed_at, cap in p.windows:
                end = resets_at if stale_after is None else min(resets_at, observed_at + stale_after)
                if end <= now:
                    continue
                next_change = min(next_change, end)
                if block_reason(used_percent, cap) is not None:
                    spent = True
                    free_at = max(free_at, end)
                if used_percent > used:
                    used = used_percent
                if minutes == WEEKLY_MINUTES and resets_at < weekly_reset:
                    weekly_reset = resets_at
            if spent:
                quota_blocked += 1
                earliest = min(earliest, free_at)
            elif transient:
                transient_blocked += 1
            else:
                ring.append(p.account_id)  # _live is sorted by id, so the ring is too
                if least_used:
                    remaining = 100.0 - min(used, 100.0)
                    score = scoring.least_used_score(remaining, p.weight, weekly_reset, now)
                    ranked.append((-score, p.priority, p.account_id))
                else:
                    ranked.append((0.0, p.priority, p.account_id))
        scores: tuple[float, ...] = ()
        if view_order is ViewOrder.RING:
            order = tuple(ring)
        else:
            ranked.sort()
            order = tuple(item[2] for item in ranked)
            if least_used:
                scores = tuple(-item[0] for item in ranked)
        return PoolView(
            computed_at=now,
            valid_until=next_change,
            stale_after=stale_after,
            order=order,
            ring=tuple(ring),
            quota_blocked=quota_blocked,
            transient_blocked=transient_blocked,
            earliest_reset=None if earliest == INF else earliest,
            scores=scores,
        )
