"""Recent load per account, for least-used's tie-break: how many picks an account had lately.

Usage figures arrive as whole percents and move slowly, so between two ticks several accounts look the same
(or near enough) and a plain ordering would send every new stream to the first of them - a burst on one
account, which is what earns `rate_limit_exceeded`. In-flight streams separate equals that serve long streams;
recent picks separate equals whose requests are short (in flight for a moment, so their count is back at 0).

The count decays by half every RECENT_HALF_LIFE seconds: a pick counts 1 now, 0.5 half a minute later, and
next to nothing after a few minutes, so yesterday's traffic never decides today's pick. One entry per account
that was ever picked (bounded by the number of accounts).
"""

from __future__ import annotations

import math

RECENT_HALF_LIFE = 30.0
"""Seconds for a pick's weight to halve."""


def decayed(count: float, since: float, now: float) -> float:
    """`count` observed at `since`, as seen at `now`."""
    if now <= since:
        return count
    return count * math.pow(0.5, (now - since) / RECENT_HALF_LIFE)


class RecentPicks:
    """Mutable per-process state owned by the caller (one for the life of the process): account -> decayed
    pick count. Shared by every pool, because an account in two pools is one upstream account."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[int, tuple[float, float]] = {}
        """account id -> (count, as of unix seconds)."""

    def count(self, account_id: int, now: float) -> float:
        entry = self._counts.get(account_id)
        return 0.0 if entry is None else decayed(entry[0], entry[1], now)

    def add(self, account_id: int, now: float) -> None:
        self._counts[account_id] = (self.count(account_id, now) + 1.0, now)
