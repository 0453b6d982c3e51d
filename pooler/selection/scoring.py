"""Least-used scoring and plan weights.

    remaining = 100 - max(used_percent over the account's live windows)        (100 with no live window)
    score     = remaining * plan_weight(plan_type)
    key       = (-floor(score / SCORE_BUCKET), weekly_reset, -score, priority, account_id)   (ascending)

Accounts are ranked by score in buckets of SCORE_BUCKET points (5% of a plus account's capacity). Within one
bucket - "otherwise close" - the account whose live weekly window resets first wins: weekly capacity left at
its reset is lost, so it is spent first (accounts with no known weekly reset come last in the bucket). Then the
raw score, the assignment priority and the account id break the remaining ties, so the order is deterministic.

Every term is invariant between two quota events (a reset passing, evidence going stale), so the order is
computed once per pool snapshot and event, never per request.
"""

from __future__ import annotations

import math

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
SCORE_BUCKET = 5.0


def plan_weight(plan_type: str | None) -> float:
    if plan_type is None:
        return DEFAULT_PLAN_WEIGHT
    return PLAN_WEIGHTS.get(plan_type.lower(), DEFAULT_PLAN_WEIGHT)


def least_used_key(
    remaining: float, weight: float, weekly_reset: float, priority: int, account_id: int
) -> tuple[float, float, float, int, int]:
    score = remaining * weight
    return (-math.floor(score / SCORE_BUCKET), weekly_reset, -score, priority, account_id)
