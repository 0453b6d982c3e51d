"""Pooled usage: plan-weighted remaining capacity per window kind, and the Codex usage API payload."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pooler.selection import AccountCandidate, PoolPolicy, WindowView, pooled_usage, pooled_usage_payload

NOW = 1_800_000_000.0
POLICY = PoolPolicy(pool_status="active", strategy="least-used")


def acct(account_id: int, plan: str | None = "plus", *windows: WindowView, **change: object) -> AccountCandidate:
    base = AccountCandidate(
        account_id, f"a{account_id}", plan, "active", "active", 100, NOW + 86_400, None, None, False, True, windows
    )
    return replace(base, **change)  # type: ignore[arg-type]


def win(minutes: int, used: float, resets_in: float | None = 3600.0) -> WindowView:
    return WindowView(minutes, used, None if resets_in is None else NOW + resets_in, NOW - 5)


def test_weighted_remaining_and_earliest_reset_per_kind() -> None:
    accounts = [
        acct(1, "plus", win(300, 50.0, 1000.0), win(10080, 20.0, 90_000.0)),
        acct(2, "pro", win(300, 10.0, 400.0), win(10080, 60.0, 50_000.0)),
        acct(3, "plus"),  # no evidence: full capacity in both kinds
    ]
    usage = pooled_usage(POLICY, accounts, NOW)
    five, weekly = usage.windows
    # weights 1 + 4 + 1 = 6; 5-hour remaining 0.5 + 4*0.9 + 1 = 5.1 -> used 15%
    assert five.window_minutes == 300 and five.used_percent == pytest.approx(15.0)
    assert five.resets_at == NOW + 400.0
    # weekly remaining 0.8 + 4*0.4 + 1 = 3.4 -> used 43.33%
    assert weekly.window_minutes == 10080 and weekly.used_percent == pytest.approx(100 * (1 - 3.4 / 6))
    assert weekly.resets_at == NOW + 50_000.0
    assert (usage.plan_type, usage.allowed, usage.limit_reached) == ("pro", True, False)
    assert (usage.serving_accounts, usage.available_accounts) == (3, 3)


def test_spent_and_capped_accounts_contribute_nothing() -> None:
    policy = replace(POLICY, primary_cap_percent=80.0)
    accounts = [
        acct(1, "plus", win(300, 40.0)),  # remaining (80 - 40) / 80 = 0.5 of what the pool may use
        acct(2, "plus", win(300, 10.0), limited_until=NOW + 60),  # 429-limited: 0
        acct(3, "plus", win(300, 85.0)),  # over the cap: 0
    ]
    usage = pooled_usage(policy, accounts, NOW)
    assert usage.windows[0].used_percent == pytest.approx(100 * (1 - 0.5 / 3))
    assert (usage.available_accounts, usage.limit_reached, usage.allowed) == (1, False, True)


def test_out_of_service_accounts_and_passed_resets() -> None:
    accounts = [
        acct(1, "plus", win(300, 100.0, resets_in=-10.0)),  # reset passed: full again
        acct(2, "pro", win(300, 0.0), state="paused"),  # not serving: ignored
        acct(3, "pro", has_token=False),
    ]
    usage = pooled_usage(POLICY, accounts, NOW)
    assert usage.windows[0].used_percent == 0.0 and usage.windows[0].resets_at is None
    assert (usage.plan_type, usage.serving_accounts) == ("plus", 1)


def test_all_spent_pool_reports_limit_reached() -> None:
    accounts = [acct(1, "plus", win(300, 100.0, 300.0)), acct(2, "plus", limited_until=NOW + 600)]
    usage = pooled_usage(POLICY, accounts, NOW)
    assert (usage.limit_reached, usage.allowed) == (True, False)
    assert usage.windows[0].used_percent == 100.0
    payload = pooled_usage_payload(usage, NOW)
    assert payload["rate_limit"]["limit_reached"] is True
    assert payload["rate_limit"]["primary_window"]["used_percent"] == 100


def test_paused_pool_is_not_allowed() -> None:
    usage = pooled_usage(replace(POLICY, pool_status="paused"), [acct(1)], NOW)
    assert (usage.allowed, usage.limit_reached) == (False, False)


def test_payload_has_the_codex_usage_shape_with_integers() -> None:
    accounts = [acct(1, "plus", win(300, 33.4, 1234.5), win(10080, 70.6, 100_000.0))]
    payload = pooled_usage_payload(pooled_usage(POLICY, accounts, NOW), NOW + 0.25)
    assert payload == {
        "plan_type": "plus",
        "rate_limit": {
            "allowed": True,
            "limit_reached": False,
            "primary_window": {
                "used_percent": 33,
                "limit_window_seconds": 18_000,
                "reset_after_seconds": 1234,
                "reset_at": int(NOW + 1234.5),
            },
            "secondary_window": {
                "used_percent": 71,
                "limit_window_seconds": 604_800,
                "reset_after_seconds": 100_000,
                "reset_at": int(NOW + 100_000),
            },
        },
    }


def test_payload_with_only_weekly_evidence_puts_it_in_the_primary_slot() -> None:
    payload = pooled_usage_payload(pooled_usage(POLICY, [acct(1, "plus", win(10080, 10.0))], NOW), NOW)
    assert payload["rate_limit"]["primary_window"]["limit_window_seconds"] == 604_800
    assert payload["rate_limit"]["secondary_window"] is None


def test_payload_without_evidence_or_with_unknown_resets() -> None:
    empty = pooled_usage_payload(pooled_usage(POLICY, [acct(1, "mystery-plan")], NOW), NOW)
    assert empty["plan_type"] == "plus"  # the client parses a closed enum
    assert empty["rate_limit"]["primary_window"] is None
    unknown = pooled_usage_payload(pooled_usage(POLICY, [acct(1, "plus", win(300, 5.0, resets_in=None))], NOW), NOW)
    window = unknown["rate_limit"]["primary_window"]
    assert (window["reset_after_seconds"], window["reset_at"]) == (18_000, int(NOW) + 18_000)


def test_rounding_never_announces_a_spent_pool_that_still_serves() -> None:
    accounts = [acct(1, "plus", win(300, 99.8))]
    payload = pooled_usage_payload(pooled_usage(POLICY, accounts, NOW), NOW)
    assert payload["rate_limit"]["primary_window"]["used_percent"] == 99
