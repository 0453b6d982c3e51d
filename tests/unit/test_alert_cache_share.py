"""The `cache_share_drop` alert rule on hand-built snapshots: a sharp fall of a pool's cached input share (last
hour vs the 24 h before) with enough volume alerts, naming the dominant switch cause."""

from __future__ import annotations

import datetime as dt

from pooler.alerts.rules import AlertSnapshot, CacheShare, Severity, Thresholds, cache_share_drop, evaluate_rules

NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)


def pool(recent: tuple[int, int], baseline: tuple[int, int], status: str = "active", **switches: int) -> CacheShare:
    return CacheShare(3, "team", status, recent[0], recent[1], baseline[0], baseline[1], switches)


def signals(*pools: CacheShare, th: Thresholds | None = None) -> list[dict[str, object]]:
    found = cache_share_drop(AlertSnapshot(now=NOW, cache=pools), th or Thresholds())
    return [{"subject": s.subject, "severity": s.severity, "title": s.title, **s.as_details()} for s in found]


def test_a_synthetic_drop_alerts_and_names_the_dominant_cause() -> None:
    (signal,) = signals(pool((200_000, 100_000), (4_000_000, 3_800_000), account_spent=40, sticky_expired=3))
    assert signal["subject"] == "pool:3" and signal["severity"] == Severity.WATCH
    assert signal["title"] == "Pool team: cached input share fell to 50% (from 95%)"
    assert signal["dominant_switch_cause"] == "account_spent"
    assert signal["switches_by_cause"] == {"account_spent": 40, "sticky_expired": 3}
    assert "most moves: account_spent (40)" in str(signal["impact"])


def test_no_alert_for_a_small_drop_low_volume_an_inactive_pool_or_no_baseline() -> None:
    assert signals(pool((200_000, 160_000), (4_000_000, 3_800_000))) == []  # 80% vs 95%: under 20 points
    assert signals(pool((50_000, 0), (4_000_000, 3_800_000))) == []  # too few tokens this hour
    assert signals(pool((200_000, 0), (50_000, 45_000))) == []  # too little baseline
    assert signals(pool((200_000, 0), (4_000_000, 3_800_000), status="paused")) == []
    assert signals(pool((200_000, 0), (0, 0))) == []


def test_thresholds_are_settings_and_a_drop_without_moves_says_so() -> None:
    th = Thresholds(cache_drop_points=5, cache_min_input_tokens=10)
    (signal,) = signals(pool((100, 80), (100, 90)), th=th)
    assert signal["dominant_switch_cause"] is None and "no conversation moves" in str(signal["impact"])


def test_the_rule_is_registered() -> None:
    snap = AlertSnapshot(now=NOW, cache=[pool((200_000, 0), (4_000_000, 3_800_000))])
    assert [s.rule for s in evaluate_rules(snap, Thresholds())] == ["cache_share_drop"]
