"""Per-key limits kept in memory: requests per minute (sliding window) and tokens per UTC day."""

from __future__ import annotations

import math
from collections import deque

WINDOW_SECONDS = 60.0


class RequestRateLimiter:
    """Sliding 60 s window per key; memory is bounded by each key's own limit."""

    def __init__(self) -> None:
        self._hits: dict[int, deque[float]] = {}

    def check_and_count(self, key_id: int, limit: int, now: float) -> int | None:
        """None if allowed (and counted); else seconds until the next request is allowed."""
        hits = self._hits.get(key_id)
        if hits is None:
            hits = self._hits[key_id] = deque()
        while hits and hits[0] <= now - WINDOW_SECONDS:
            hits.popleft()
        if len(hits) >= limit:
            return max(1, math.ceil(hits[0] + WINDOW_SECONDS - now))
        hits.append(now)
        return None


class DailyTokens:
    """Tokens used per key prefix today (UTC): seeded from request logs on snapshot load, then counted from
    the access log."""

    def __init__(self) -> None:
        self._day = -1
        self._used: dict[str, int] = {}

    def _roll(self, now: float) -> None:
        day = int(now // 86400)
        if day != self._day:
            self._day, self._used = day, {}

    def seed(self, totals: dict[str, int], now: float) -> None:
        self._roll(now)
        for prefix, total in totals.items():
            self._used[prefix] = max(self._used.get(prefix, 0), total)

    def add(self, prefix: str, tokens: int, now: float) -> None:
        self._roll(now)
        self._used[prefix] = self._used.get(prefix, 0) + tokens

    def used(self, prefix: str, now: float) -> int:
        self._roll(now)
        return self._used.get(prefix, 0)

    def seconds_to_midnight(self, now: float) -> int:
        return max(1, math.ceil((math.floor(now / 86400) + 1) * 86400 - now))
