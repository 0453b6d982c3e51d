"""Pool activity health score (0-100) per account; the formula is documented in docs/ADMIN.md."""

from __future__ import annotations

from dataclasses import dataclass

GOOD_TTFB_MS = 1500.0
BAD_TTFB_MS = 15000.0


@dataclass(frozen=True)
class ActivityStats:
    requests: int
    successes: int
    avg_ttfb_ms: float | None
    attempts: int
    """Upstream attempts this account served (first tries and failovers to it)."""
    failed_over_from: int
    """Attempts on this account that failed and made the pool try another account."""


def success_rate(stats: ActivityStats) -> float | None:
    return None if stats.requests == 0 else stats.successes / stats.requests


def latency_score(avg_ttfb_ms: float | None) -> float:
    if avg_ttfb_ms is None or avg_ttfb_ms <= GOOD_TTFB_MS:
        return 1.0
    if avg_ttfb_ms >= BAD_TTFB_MS:
        return 0.0
    return 1.0 - (avg_ttfb_ms - GOOD_TTFB_MS) / (BAD_TTFB_MS - GOOD_TTFB_MS)


def health_score(stats: ActivityStats) -> int | None:
    """60% success rate + 25% latency + 15% share of attempts that did not fail over. None without traffic."""
    rate = success_rate(stats)
    if rate is None:
        return None
    failover_share = stats.failed_over_from / stats.attempts if stats.attempts else 0.0
    score = 0.60 * rate + 0.25 * latency_score(stats.avg_ttfb_ms) + 0.15 * (1.0 - min(1.0, failover_share))
    return round(100 * max(0.0, min(1.0, score)))


def health_level(score: int | None, routable_now: bool) -> str:
    """The colour of a health figure: history alone is not health when the account cannot route now."""
    if not routable_now:
        return "blocked"
    if score is None:
        return "none"
    return "ok" if score >= 80 else ("warn" if score >= 50 else "blocked")
