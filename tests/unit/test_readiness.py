"""Readiness lines: the selection policy's reason codes and sentences, per account and summed per pool."""

from __future__ import annotations

import datetime as dt

import pytest

from pooler.readiness import (
    CAUSES,
    AccountFacts,
    AssignmentFacts,
    Fix,
    Level,
    WindowFacts,
    account_readiness,
    cause_of,
    pool_summary,
)
from pooler.selection import explain
from pooler.selection import reasons as rc

NOW = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
POOL = (AssignmentFacts("team-a"),)


def window(minutes: int, used: float, resets_in: float | None = 60, age_min: float = 1) -> WindowFacts:
    resets = NOW + dt.timedelta(minutes=resets_in) if resets_in is not None else None
    return WindowFacts(minutes, used, resets, NOW - dt.timedelta(minutes=age_min))


def test_routable_names_pools_and_busiest_window() -> None:
    r = account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 42), window(10080, 10))), NOW)
    assert r.routable and r.level == Level.OK and r.code is None
    assert r.reason == "Routable in team-a; 5h 42% used"


def test_paused_account_uses_the_policy_sentence_and_a_hint() -> None:
    r = account_readiness(AccountFacts("paused", state_reason="operator", assignments=POOL), NOW)
    assert not r.routable and r.category == "paused" and r.code == "account_paused"
    assert r.reason == f"{explain('account_paused')} Reactivate it to route."


def test_exhausted_window_gives_reset_time() -> None:
    r = account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, resets_in=125),)), NOW)
    assert not r.routable and (r.category, r.code) == ("quota_exhausted", rc.QUOTA_EXHAUSTED)
    assert r.reason == (
        "A quota window of the account is fully used until its reset. The 5h window resets in 2h 05m (14:05 UTC)."
    )
    assert r.until == NOW + dt.timedelta(minutes=125)
    assert r.fixes == (Fix.WAIT,)


def test_quota_line_names_the_bars_reset_and_when_stale_evidence_frees_it_earlier() -> None:
    """The line's instant is the blocking window's reset (what its quota bar shows), never the staleness end."""
    facts = AccountFacts("active", assignments=POOL, windows=(window(300, 100, resets_in=153, age_min=1),))
    r = account_readiness(facts, NOW, stale_after_seconds=1800)
    assert r.until == NOW + dt.timedelta(minutes=153)
    assert "The 5h window resets in 2h 33m (14:33 UTC)." in r.reason
    assert "Its evidence goes stale in 29m (12:29 UTC); the gateway tries it again then." in r.reason


def test_last_blocking_window_names_the_end() -> None:
    windows = (window(300, 100, resets_in=30), window(10080, 100, resets_in=3 * 1440))
    r = account_readiness(AccountFacts("active", assignments=POOL, windows=windows), NOW)
    assert r.until == NOW + dt.timedelta(days=3)
    assert "The weekly window resets in 3d 0h (Thu 12:00 UTC)." in r.reason


def test_window_reset_in_the_past_no_longer_blocks() -> None:
    r = account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, resets_in=-5),)), NOW)
    assert r.routable


def test_stale_evidence_is_ignored_like_the_gateway_does() -> None:
    facts = AccountFacts("active", assignments=POOL, windows=(window(300, 100, resets_in=125, age_min=30),))
    assert not account_readiness(facts, NOW).routable  # no bound configured: evidence counts
    r = account_readiness(facts, NOW, stale_after_seconds=900)
    assert r.routable and "quota evidence is stale" in r.reason


def test_pool_cap_blocks_below_100_per_pool() -> None:
    capped = AssignmentFacts("capped", primary_cap_percent=80)
    facts = AccountFacts("active", assignments=(capped,), windows=(window(300, 85),))
    r = account_readiness(facts, NOW)
    assert not r.routable and r.code == rc.QUOTA_CAP and r.category == "quota_exhausted"
    both = AccountFacts("active", assignments=(capped, AssignmentFacts("open")), windows=(window(300, 85),))
    assert account_readiness(both, NOW).reason.startswith("Routable in open;")


def test_unassigned_and_paused_assignment_or_pool() -> None:
    r = account_readiness(AccountFacts("active"), NOW)
    assert (r.category, r.code) == ("unassigned", "unassigned")
    paused = (AssignmentFacts("team-a", status="paused"),)
    assert account_readiness(AccountFacts("active", assignments=paused), NOW).code == rc.ASSIGNMENT_PAUSED
    archived = (AssignmentFacts("team-a", pool_status="archived"),)
    assert account_readiness(AccountFacts("active", assignments=archived), NOW).code == rc.POOL_PAUSED


def test_account_cause_wins_over_pool_cause() -> None:
    pools = (AssignmentFacts("a", pool_status="paused"), AssignmentFacts("b"))
    assert account_readiness(AccountFacts("reauth_required", assignments=pools), NOW).category == "reauth"


def test_account_cause_wins_over_its_only_pool_being_paused() -> None:
    """Resuming the pool would not make it route: the line names the sign-in and offers relink first."""
    paused = (AssignmentFacts("team-a", pool_status="paused"),)
    r = account_readiness(AccountFacts("reauth_required", assignments=paused), NOW)
    assert (r.code, r.category) == ("account_reauth_required", "reauth")
    assert r.reason.startswith("The account must be signed in again.")
    assert r.reason.endswith("(Pool team-a is also not active.)")
    assert r.fixes == (Fix.RELINK, Fix.REPLACE_AUTH) and r.pool is None
    spent = AccountFacts("active", assignments=paused, windows=(window(300, 100, resets_in=30),))
    assert account_readiness(spent, NOW).code == rc.QUOTA_EXHAUSTED
    on_paused_assignment = (AssignmentFacts("team-a", status="paused"),)
    assert account_readiness(AccountFacts("paused", assignments=on_paused_assignment), NOW).code == "account_paused"


def test_pool_cause_when_the_account_itself_could_route() -> None:
    r = account_readiness(AccountFacts("active", assignments=(AssignmentFacts("team-a", pool_status="paused"),)), NOW)
    assert (r.code, r.category, r.pool) == (rc.POOL_PAUSED, "pool_paused", "team-a")
    assert r.reason == "Pool team-a is not active. Resume the pool to route."
    assert r.fixes == (Fix.RESUME_POOL,)


@pytest.mark.parametrize(
    ("state", "fixes"),
    [
        ("reauth_required", (Fix.RELINK, Fix.REPLACE_AUTH)),
        ("refresh_failed", (Fix.RELINK, Fix.REPLACE_AUTH, Fix.REFRESH)),
        ("paused", (Fix.REACTIVATE,)),
        ("deleted", ()),
        ("some_future_state", (Fix.RELINK, Fix.REPLACE_AUTH)),
    ],
)
def test_fixes_per_account_state(state: str, fixes: tuple[Fix, ...]) -> None:
    """Refresh is never offered once the refresh token was rejected; an unknown state still gets a way out."""
    assert account_readiness(AccountFacts(state, assignments=POOL), NOW).fixes == fixes


def test_cause_table_is_the_one_place_a_new_state_goes() -> None:
    assert cause_of("account_reauth_required") is CAUSES["account_reauth_required"]
    assert cause_of("account_brand_new").category == "brand_new"


@pytest.mark.parametrize(
    ("facts", "code", "category"),
    [
        (AccountFacts("reauth_required", assignments=POOL), "account_reauth_required", "reauth"),
        (AccountFacts("deleted", assignments=POOL), "account_deleted", "deleted"),
        (AccountFacts("refresh_failed", assignments=POOL), "account_refresh_failed", "refresh_failed"),
        (AccountFacts("active", assignments=POOL, has_access_token=False), rc.NO_TOKEN, "reauth"),
        (AccountFacts("active", assignments=POOL, refresh_requested=True), rc.REFRESH_REQUESTED, "refresh_pending"),
        (
            AccountFacts("active", assignments=POOL, access_token_expires_at=NOW - dt.timedelta(minutes=1)),
            rc.TOKEN_EXPIRED,
            "refresh_pending",
        ),
        (
            AccountFacts(
                "active",
                assignments=POOL,
                access_token_expires_at=NOW - dt.timedelta(minutes=1),
                has_refresh_token=False,
            ),
            rc.TOKEN_EXPIRED,
            "reauth",
        ),
    ],
)
def test_blocking_causes(facts: AccountFacts, code: str, category: str) -> None:
    r = account_readiness(facts, NOW)
    assert not r.routable and r.level == Level.BLOCKED and (r.code, r.category) == (code, category)
    assert r.reason.startswith(explain(code).rstrip("."))


def test_demoted_names_its_end() -> None:
    demoted = AccountFacts("active", assignments=POOL, demoted_until=NOW + dt.timedelta(minutes=3))
    r = account_readiness(demoted, NOW)
    assert r.code == rc.DEMOTED and "It routes again in 3m (12:03 UTC)." in r.reason


def test_states_the_gateway_routes_are_routable() -> None:
    """quota_exhausted with room (the scheduler lags the windows) and refresh_due serve, with notes."""
    room = (window(300, 5),)
    assert account_readiness(AccountFacts("quota_exhausted", assignments=POOL, windows=room), NOW).routable
    r = account_readiness(AccountFacts("refresh_due", assignments=POOL, windows=room), NOW)
    assert r.routable and r.level == Level.WARN and "token refresh pending" in r.reason


def test_missing_evidence_warns() -> None:
    r = account_readiness(AccountFacts("active", assignments=POOL), NOW)
    assert r.routable and r.level == Level.WARN and "no quota evidence yet" in r.reason


def test_pool_summary_counts_causes() -> None:
    rs = [
        account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 5),)), NOW),
        account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, 125),)), NOW),
        account_readiness(AccountFacts("active", assignments=POOL, windows=(window(300, 100, 200),)), NOW),
        account_readiness(AccountFacts("paused", assignments=POOL), NOW),
    ]
    assert pool_summary(rs, NOW) == (
        "1 of 4 accounts routable; 2 quota-exhausted, first back in 2h 05m (14:05 UTC); 1 paused"
    )
    assert pool_summary([], NOW) == "No accounts assigned"
