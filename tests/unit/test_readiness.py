"""Readiness lines: each blocking cause is named, and pool summaries count them."""

from __future__ import annotations

import datetime as dt

from pooler.readiness import AccountFacts, AssignmentFacts, Level, WindowFacts, account_readiness, pool_summary

NOW = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
POOL = (AssignmentFacts("team-a"),)


def window(minutes: int, used: float, resets_in: float | None = 60, age_min: float = 1) -> WindowFacts:
    resets = NOW + dt.timedelta(minutes=resets_in) if resets_in is not None else None
    return WindowFacts(minutes, used, resets, NOW - dt.timedelta(minutes=age_min))


def test_routable_names_pools_and_busiest_window() -> None:
    r = account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 42), window(10080, 10))), NOW)
    assert r.routable and r.level == Level.OK
    assert r.reason == "Routable in team-a; 5h 42% used"


def test_paused_account_is_blocked() -> None:
    r = account_readiness(AccountFacts("paused", state_reason="operator", assignments=POOL), NOW)
    assert not r.routable and r.category == "paused" and "Paused" in r.reason


def test_exhausted_window_gives_reset_time() -> None:
    r = account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, resets_in=125),)), NOW)
    assert not r.routable and r.category == "quota_exhausted"
    assert r.reason == "5h quota exhausted until 14:05"


def test_window_reset_in_the_past_no_longer_blocks() -> None:
    r = account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, resets_in=-5),)), NOW)
    assert r.routable


def test_pool_cap_blocks_below_100() -> None:
    facts = AccountFacts("active", assignments=POOL, windows=(window(300, 85),), primary_cap_percent=80)
    r = account_readiness(facts, NOW)
    assert not r.routable and "above the pool cap" in r.reason


def test_unassigned_and_paused_assignment() -> None:
    assert account_readiness(AccountFacts("active"), NOW).category == "unassigned"
    paused = (AssignmentFacts("team-a", status="paused"),)
    assert not account_readiness(AccountFacts("active", assignments=paused), NOW).routable


def test_reauth_deleted_demoted_refresh_failed() -> None:
    assert account_readiness(AccountFacts("reauth_required", assignments=POOL), NOW).category == "reauth"
    assert account_readiness(AccountFacts("deleted", assignments=POOL), NOW).category == "deleted"
    demoted = AccountFacts("active", assignments=POOL, demoted_until=NOW + dt.timedelta(minutes=3))
    assert "Demoted" in account_readiness(demoted, NOW).reason
    failed = AccountFacts("refresh_failed", assignments=POOL, access_token_expires_at=NOW - dt.timedelta(minutes=1))
    assert account_readiness(failed, NOW).category == "refresh_failed"
    failed_valid = AccountFacts(
        "refresh_failed", assignments=POOL, windows=(window(300, 1),), access_token_expires_at=NOW + dt.timedelta(1)
    )
    r = account_readiness(failed_valid, NOW)
    assert r.routable and r.level == Level.WARN


def test_stale_or_missing_evidence_warns() -> None:
    assert account_readiness(AccountFacts("active", assignments=POOL), NOW).level == Level.WARN
    stale = AccountFacts("active", assignments=POOL, windows=(window(300, 5, age_min=60 * 7),))
    assert "stale" in account_readiness(stale, NOW).reason


def test_pool_summary_counts_causes() -> None:
    rs = [
        account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 5),)), NOW),
        account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, 125),)), NOW),
        account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, 200),)), NOW),
        account_readiness(AccountFacts("paused", assignments=POOL), NOW),
    ]
    assert pool_summary(rs, NOW) == "1 of 4 accounts routable; 2 quota-exhausted until 14:05; 1 paused"
    assert pool_summary([], NOW) == "No accounts assigned"
