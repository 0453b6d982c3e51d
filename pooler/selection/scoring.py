"""Least-used scoring and plan weights.

    remaining = 100 - max(used_percent over the account's live windows)      (100 with no live window)
    days      = days until the account's live weekly window resets, in [0, 7] (7 when unknown)
    score     = remaining * plan_weight(plan_type) - RESET_PULL * days
    order     = score descending, then assignment priority, then account id
    ties      = accounts within TIE_BAND points of the best one the request may use are equals: among them the
                fewest streams in flight wins, then the fewest recent picks (`pooler.selection.load`), then
                the order above

Capacity dominates: `remaining * plan_weight` is what the account can still serve. The reset term separates
accounts that are otherwise close (at most RESET_PULL * 7 = 14 points, 14% of a plus account): weekly capacity
left at a reset is lost, so the account resetting first is spent first.

The band is why whole-percent figures do not funnel traffic: an account at 3% and one at 4% (or two fresh
accounts at 0%) share new streams instead of the first taking all of them until its figure ticks. Capacity
still wins beyond the band (a pro account at 0% is not tied with a plus account at 0%), and so does a reset
more than TIE_BAND / RESET_PULL days nearer.

Scores are computed when the pool's view is (re)computed - once per snapshot and per quota event (a reset
passing, evidence going stale), never per request. Between events every known reset ages equally, so the
order is stable.
"""

from __future__ import annotations

PLAN_WEIGHTS: dict[str, float] = {
    "pro": 4.0,
    "enterprise": 1.5,
    "business": 1.5,
    "team": 1.5,
    "edu": 1.5,
    "education": 1.5,
    "plus": 1.0,
    "go": 0.5,
    "free": 0.25,
    "free_workspace": 0.25,
}
"""Relative capacity per plan: pro > business/team/enterprise > plus > go > free."""
DEFAULT_PLAN_WEIGHT = 1.0
"""Unknown or missing plan: treated like plus rather than guessed up or down."""
RESET_PULL = 2.0
"""Score points per day until the weekly reset."""
TIE_BAND = 5.0
"""Score points within which accounts count as equals (5% of a plus account's capacity)."""
TIE_MAX_EQUALS = 16
"""At most this many equals are compared per pick (a pool of 1,000 fresh accounts would otherwise be walked in
full on every pick: ~3 ms); spreading a burst over 16 accounts is plenty."""
WEEK_DAYS = 7.0
_DAY = 86_400.0


def plan_weight(plan_type: str | None) -> float:
    if plan_type is None:
        return DEFAULT_PLAN_WEIGHT
    return PLAN_WEIGHTS.get(plan_type.lower(), DEFAULT_PLAN_WEIGHT)


def least_used_score(remaining: float, weight: float, weekly_reset: float, now: float) -> float:
    """`weekly_reset` is a unix time (math.inf when unknown)."""
    days = min(WEEK_DAYS, max(0.0, (weekly_reset - now) / _DAY))
    return remaining * weight - RESET_PULL * days
