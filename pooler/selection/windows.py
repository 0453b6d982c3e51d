"""Quota-window arithmetic shared by eligibility, the pool index and pooled usage.

A window is *live* at `now` while its reset is still ahead and its evidence is fresh:
`now < min(resets_at, observed_at + stale_after)`. A window that is not live says nothing (an account whose
windows all reset is as good as new), and an account with no live window is routable with full capacity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pooler.selection import reasons
from pooler.selection.types import PoolPolicy, WindowView
from pooler.states import FIVE_HOUR_MINUTES, WEEKLY_MINUTES

INF = math.inf


def cap_for(window_minutes: int, policy: PoolPolicy) -> float:
    """The pool's cap for a window, by its length: other lengths are only blocked when fully used."""
    if window_minutes == FIVE_HOUR_MINUTES:
        return policy.primary_cap_percent
    if window_minutes == WEEKLY_MINUTES:
        return policy.secondary_cap_percent
    return 100.0


def live_until(window: WindowView, stale_after: float | None) -> float:
    """When this evidence stops counting (reset or staleness); INF when neither is known."""
    end = INF if window.resets_at is None else window.resets_at
    if stale_after is not None:
        end = min(end, window.observed_at + stale_after)
    return end


def block_reason(used_percent: float, cap: float) -> str | None:
    """`quota_exhausted` at 100%, else `quota_cap` at or above a cap below 100, else None."""
    if used_percent >= 100.0:
        return reasons.QUOTA_EXHAUSTED
    if cap < 100.0 and used_percent >= cap:
        return reasons.QUOTA_CAP
    return None


def quota_block(
    windows: Iterable[WindowView], policy: PoolPolicy, now: float, stale_after: float | None
) -> tuple[str | None, float]:
    """(reason, free_at) over the live windows: exhaustion wins over a cap; free_at is when the last blocking
    window stops counting (INF if unknown, 0.0 if not blocked)."""
    reason: str | None = None
    free_at = 0.0
    for window in windows:
        end = live_until(window, stale_after)
        if end <= now:
            continue
        found = block_reason(window.used_percent, cap_for(window.window_minutes, policy))
        if found is None:
            continue
        if reason != reasons.QUOTA_EXHAUSTED:
            reason = found
        free_at = max(free_at, end)
    return reason, free_at


def max_live_used(windows: Iterable[WindowView], now: float, stale_after: float | None) -> float:
    """Highest used percent over the live windows, clamped to [0, 100]; 0 when none is live."""
    used = 0.0
    for window in windows:
        if live_until(window, stale_after) > now and window.used_percent > used:
            used = window.used_percent
    return min(used, 100.0)
