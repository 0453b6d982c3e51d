"""Property tests: the indexed hot path agrees with the reference rules whatever the candidates."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pooler.selection import (
    AccountCandidate,
    PoolIndex,
    PoolPolicy,
    SelectionRequest,
    StrategyState,
    WindowView,
    ineligibility,
    select_account,
)
from pooler.selection.eligibility import static_reason
from pooler.selection.windows import quota_block

NOW = 1_800_000_000.0
offsets = st.one_of(st.none(), st.sampled_from([-600.0, -1.0, 0.0, 1.0, 600.0]))


def at(offset: float | None) -> float | None:
    return None if offset is None else NOW + offset


windows = st.builds(
    lambda minutes, used, reset, age: WindowView(minutes, used, at(reset), NOW - age),
    st.sampled_from([300, 10080, 1440]),
    st.sampled_from([0.0, 50.0, 79.0, 80.0, 99.0, 100.0]),
    offsets,
    st.sampled_from([0.0, 100.0, 5000.0]),
)
candidates = st.lists(
    st.builds(
        lambda i, plan, state, assignment, prio, tok, dem, lim, refresh, has, wins: AccountCandidate(
            i, f"a{i}", plan, state, assignment, prio, at(tok), at(dem), at(lim), refresh, has, tuple(wins)
        ),
        st.integers(1, 12),
        st.sampled_from([None, "plus", "pro", "free", "team"]),
        st.sampled_from(["active", "active", "active", "refresh_due", "refreshing", "paused", "reauth_required"]),
        st.sampled_from(["active", "active", "active", "paused"]),
        st.integers(0, 3),
        offsets,
        offsets,
        offsets,
        st.booleans(),
        st.sampled_from([True, True, True, False]),
        st.lists(windows, max_size=3),
    ),
    max_size=8,
    unique_by=lambda c: c.account_id,
)
policies = st.builds(
    PoolPolicy,
    pool_status=st.sampled_from(["active", "active", "active", "paused"]),
    strategy=st.sampled_from(["least-used", "round-robin", "primary-first", "random"]),
    primary_cap_percent=st.sampled_from([100.0, 80.0]),
    secondary_cap_percent=st.sampled_from([100.0, 90.0]),
    allowed_models=st.sampled_from([None, frozenset({"m1"}), frozenset({"m1", "m2"})]),
    max_concurrency_per_account=st.sampled_from([None, 1, 2]),
    stale_after_seconds=st.sampled_from([None, 1000.0]),
)
requests = st.builds(
    SelectionRequest,
    now=st.sampled_from([NOW, NOW + 0.5]),
    model=st.sampled_from([None, "m1", "m2"]),
    exclude=st.frozensets(st.integers(1, 12), max_size=4),
    sticky_account_id=st.one_of(st.none(), st.integers(1, 12)),
    in_flight=st.dictionaries(st.integers(1, 12), st.integers(0, 3), max_size=6),
    enforce_cap=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(policies, candidates, requests, st.integers(0, 3))
def test_chosen_is_eligible_and_something_is_chosen_when_possible(
    policy: PoolPolicy, accounts: list[AccountCandidate], request: SelectionRequest, seed: int
) -> None:
    # Warm the index at another time first, so a cached view must be invalidated correctly.
    index = PoolIndex(policy, accounts)
    select_account(policy, index, SelectionRequest(now=NOW - 700.0), StrategyState())
    result = select_account(policy, index, request, StrategyState(seed=seed))
    eligible = {c.account_id for c in accounts if ineligibility(c, policy, request) is None}
    if result.account_id is not None:
        assert result.account_id in eligible
        assert result.error is None
        assert result.sticky_kept == (result.account_id == request.sticky_account_id)
        # A sticky account that is eligible but for its cap keeps the session (the request overflows).
        assert result.sticky_full == (
            request.sticky_account_id is not None
            and not result.sticky_kept
            and _only_capped(policy, accounts, request, request.sticky_account_id)
        )
        assert result.sticky_moved == (
            request.sticky_account_id is not None and not result.sticky_kept and not result.sticky_full
        )
        if request.sticky_account_id in eligible:
            assert result.sticky_kept
    else:
        assert not eligible
        assert result.error == _expected_error(policy, accounts, request)
        if result.error == "usage_limit_reached":
            assert result.earliest_reset == _expected_earliest(policy, accounts, request)


def _spent_until(c: AccountCandidate, policy: PoolPolicy, request: SelectionRequest) -> float | None:
    """When the account stops being spent (0.0 if it is not spent now); the brute-force reference."""
    stale = request.stale_after_seconds if request.stale_after_seconds is not None else policy.stale_after_seconds
    reason, free_at = quota_block(c.windows, policy, request.now, stale)
    limited = c.limited_until is not None and c.limited_until > request.now
    if not limited and reason is None:
        return 0.0
    return max(free_at, c.limited_until if limited and c.limited_until is not None else 0.0)


def _expected_error(policy: PoolPolicy, accounts: list[AccountCandidate], request: SelectionRequest) -> str:
    if policy.pool_status != "active":
        return "pool_paused"
    if policy.allowed_models is not None and request.model is not None and request.model not in policy.allowed_models:
        return "model_not_allowed"
    serving = [c for c in accounts if static_reason(c) is None]
    if serving and all(_spent_until(c, policy, request) != 0.0 for c in serving):
        return "usage_limit_reached"
    if any(_only_capped(policy, accounts, request, c.account_id) for c in accounts):
        return "concurrency_cap"
    return "no_eligible_account"


def _only_capped(
    policy: PoolPolicy, accounts: list[AccountCandidate], request: SelectionRequest, account_id: int
) -> bool:
    """The account would serve this request but for the concurrency cap (not tried already)."""
    found = [c for c in accounts if c.account_id == account_id]
    return (
        bool(found)
        and account_id not in request.exclude
        and ineligibility(found[0], policy, request) == "concurrency_cap"
    )


def _expected_earliest(policy: PoolPolicy, accounts: list[AccountCandidate], request: SelectionRequest) -> float | None:
    times = [_spent_until(c, policy, request) for c in accounts if static_reason(c) is None]
    known = [t for t in times if t is not None and t != float("inf")]
    return min(known) if known else None


@settings(max_examples=150, deadline=None)
@given(policies, candidates, st.integers(0, 5))
def test_failover_walks_every_eligible_account_exactly_once(
    policy: PoolPolicy, accounts: list[AccountCandidate], seed: int
) -> None:
    index, state = PoolIndex(policy, accounts), StrategyState(seed=seed)
    tried: list[int] = []
    while True:
        result = select_account(policy, index, SelectionRequest(now=NOW, exclude=frozenset(tried)), state)
        if result.account_id is None:
            break
        assert result.account_id not in tried
        tried.append(result.account_id)
    base = SelectionRequest(now=NOW)
    assert set(tried) == {c.account_id for c in accounts if ineligibility(c, policy, base) is None}
