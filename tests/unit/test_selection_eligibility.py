"""Eligibility rules: every reason code, caps, staleness, window resets, accounts without windows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pooler.selection import reasons
from pooler.selection.eligibility import explain, ineligibility
from pooler.selection.types import AccountCandidate, PoolPolicy, SelectionRequest, WindowView

NOW = 1_800_000_000.0
BASE = AccountCandidate(
    account_id=1,
    label="a",
    plan_type="plus",
    state="active",
    assignment_status="active",
    priority=100,
    access_token_expires_at=NOW + 3600,
    demoted_until=None,
    limited_until=None,
    refresh_requested=False,
    has_token=True,
    windows=(),
)
POLICY = PoolPolicy(pool_status="active", strategy="least-used")
REQUEST = SelectionRequest(now=NOW, model="gpt-5-codex")


def window(minutes: int, used: float, resets_in: float | None = 600.0, age: float = 10.0) -> WindowView:
    return WindowView(minutes, used, None if resets_in is None else NOW + resets_in, NOW - age)


def reason(
    candidate: AccountCandidate = BASE, policy: PoolPolicy = POLICY, request: SelectionRequest = REQUEST
) -> str | None:
    return ineligibility(candidate, policy, request)


def test_a_plain_active_account_is_eligible() -> None:
    assert reason() is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"assignment_status": "paused"}, "assignment_paused"),
        ({"state": "paused"}, "account_paused"),
        ({"state": "reauth_required"}, "account_reauth_required"),
        ({"state": "refresh_failed"}, "account_refresh_failed"),
        ({"state": "deleted"}, "account_deleted"),
        ({"has_token": False}, "no_token"),
        ({"access_token_expires_at": NOW}, "token_expired"),
        ({"access_token_expires_at": NOW - 1}, "token_expired"),
        ({"refresh_requested": True}, "refresh_requested"),
        ({"demoted_until": NOW + 30}, "demoted"),
        ({"limited_until": NOW + 30}, "rate_limited"),
        ({"windows": (window(300, 100.0),)}, "quota_exhausted"),
        ({"windows": (window(10080, 100.0),)}, "quota_exhausted"),
    ],
)
def test_account_reason_codes(change: dict[str, object], expected: str) -> None:
    assert reason(replace(BASE, **change)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["refresh_due", "refreshing", "quota_exhausted", "active"])
def test_routable_states(state: str) -> None:
    # refresh_due/refreshing keep serving on the still-valid token; quota_exhausted is judged by its windows.
    assert reason(replace(BASE, state=state)) is None


def test_refresh_due_with_an_expired_token_is_not_routable() -> None:
    assert reason(replace(BASE, state="refresh_due", access_token_expires_at=NOW - 5)) == "token_expired"


def test_unknown_token_expiry_counts_as_valid() -> None:
    assert reason(replace(BASE, access_token_expires_at=None)) is None


def test_past_demotion_and_limit_no_longer_count() -> None:
    assert reason(replace(BASE, demoted_until=NOW, limited_until=NOW - 1)) is None


def test_pool_and_model_reasons_come_first() -> None:
    paused = replace(POLICY, pool_status="paused")
    assert reason(replace(BASE, state="deleted"), policy=paused) == "pool_paused"
    assert reason(policy=replace(POLICY, pool_status="archived")) == "pool_paused"
    only = replace(POLICY, allowed_models=frozenset({"gpt-5"}))
    assert reason(policy=only) == "model_not_allowed"
    assert reason(policy=only, request=replace(REQUEST, model="gpt-5")) is None
    # No model known (e.g. a websocket upgrade): nothing to check against the list.
    assert reason(policy=only, request=replace(REQUEST, model=None)) is None


def test_concurrency_cap_and_already_tried() -> None:
    capped = replace(POLICY, max_concurrency_per_account=2)
    assert reason(policy=capped, request=replace(REQUEST, in_flight={1: 2})) == "concurrency_cap"
    assert reason(policy=capped, request=replace(REQUEST, in_flight={1: 1})) is None
    assert reason(request=replace(REQUEST, in_flight={1: 50})) is None  # no cap configured
    # One of two workers sharing the cap: its share is 1.
    assert reason(policy=capped, request=replace(REQUEST, in_flight={1: 1}, cap_workers=2)) == "concurrency_cap"
    assert reason(request=replace(REQUEST, exclude=frozenset({1}))) == "already_tried"
    assert reason(request=replace(REQUEST, exclude=frozenset({2}))) is None


def test_caps_apply_by_window_length_not_slot() -> None:
    policy = replace(POLICY, primary_cap_percent=80.0, secondary_cap_percent=90.0)
    assert reason(replace(BASE, windows=(window(300, 79.9),)), policy) is None
    assert reason(replace(BASE, windows=(window(300, 80.0),)), policy) == "quota_cap"
    assert reason(replace(BASE, windows=(window(10080, 85.0),)), policy) is None
    assert reason(replace(BASE, windows=(window(10080, 90.0),)), policy) == "quota_cap"
    # A window of another length has no cap, only exhaustion.
    assert reason(replace(BASE, windows=(window(1440, 99.0),)), policy) is None
    assert reason(replace(BASE, windows=(window(1440, 100.0),)), policy) == "quota_exhausted"


def test_exhaustion_wins_over_cap_and_a_cap_of_100_is_no_cap() -> None:
    policy = replace(POLICY, primary_cap_percent=50.0)
    both = replace(BASE, windows=(window(300, 60.0), window(10080, 100.0)))
    assert reason(both, policy) == "quota_exhausted"
    assert reason(replace(BASE, windows=(window(300, 99.9),))) is None


def test_a_window_whose_reset_passed_is_not_exhausted_any_more() -> None:
    assert reason(replace(BASE, windows=(window(300, 100.0, resets_in=0.0),))) is None
    assert reason(replace(BASE, windows=(window(300, 100.0, resets_in=-60.0),))) is None
    capped = replace(POLICY, primary_cap_percent=50.0)
    assert reason(replace(BASE, windows=(window(300, 90.0, resets_in=-1.0),)), capped) is None


def test_stale_evidence_is_ignored_from_policy_or_request() -> None:
    old = replace(BASE, windows=(window(300, 100.0, resets_in=None, age=7200.0),))
    assert reason(old) == "quota_exhausted"  # no staleness bound: a full window without reset stays full
    assert reason(old, replace(POLICY, stale_after_seconds=3600.0)) is None
    assert reason(old, request=replace(REQUEST, stale_after_seconds=3600.0)) is None
    # The request's bound overrides the policy's.
    loose = replace(REQUEST, stale_after_seconds=10_000.0)
    assert reason(old, replace(POLICY, stale_after_seconds=3600.0), loose) == "quota_exhausted"
    fresh = replace(BASE, windows=(window(300, 100.0, age=60.0),))
    assert reason(fresh, replace(POLICY, stale_after_seconds=3600.0)) == "quota_exhausted"


def test_accounts_without_any_window_are_routable() -> None:
    assert reason(replace(BASE, windows=())) is None
    assert reason(replace(BASE, windows=()), replace(POLICY, primary_cap_percent=1.0)) is None


def test_every_reason_code_has_an_explanation() -> None:
    codes = [
        "pool_paused",
        "model_not_allowed",
        "assignment_paused",
        "no_token",
        "token_expired",
        "refresh_requested",
        "demoted",
        "rate_limited",
        "quota_exhausted",
        "quota_cap",
        "concurrency_cap",
        "already_tried",
        "usage_limit_reached",
        "no_eligible_account",
    ]
    for code in codes:
        text = explain(code)
        assert text.endswith(".") and not text.startswith("Not eligible"), code
    for state in ("paused", "reauth_required", "refresh_failed", "deleted"):
        assert explain(reasons.account_state_reason(state)).endswith("."), state
    assert "'mystery'" in explain("account_mystery")
    assert {"rate_limited", "quota_exhausted", "quota_cap"} == set(reasons.QUOTA_REASONS)
