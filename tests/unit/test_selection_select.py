"""select_account: strategies' orderings, stickiness, failover exclusion, caps and the failure answers."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from pooler.selection import (
    AccountCandidate,
    PoolIndex,
    PoolPolicy,
    Selection,
    SelectionRequest,
    StrategyState,
    WindowView,
    select_account,
    worker_cap,
)
from pooler.selection.eligibility import ineligibility
from pooler.selection.load import RECENT_HALF_LIFE, RecentPicks

NOW = 1_800_000_000.0


def acct(account_id: int, **change: object) -> AccountCandidate:
    base = AccountCandidate(
        account_id=account_id,
        label=f"a{account_id}",
        plan_type="plus",
        state="active",
        assignment_status="active",
        priority=100,
        access_token_expires_at=NOW + 86_400,
        demoted_until=None,
        limited_until=None,
        refresh_requested=False,
        has_token=True,
        windows=(),
    )
    return replace(base, **change)  # type: ignore[arg-type]


def win(minutes: int, used: float, resets_in: float | None = 3600.0, age: float = 10.0) -> WindowView:
    return WindowView(minutes, used, None if resets_in is None else NOW + resets_in, NOW - age)


def pol(strategy: str = "least-used", **change: object) -> PoolPolicy:
    return replace(PoolPolicy(pool_status="active", strategy=strategy), **change)  # type: ignore[arg-type]


def req(**change: object) -> SelectionRequest:
    return replace(SelectionRequest(now=NOW, model="gpt-5-codex"), **change)  # type: ignore[arg-type]


def pick(policy: PoolPolicy, candidates: list[AccountCandidate], request: SelectionRequest | None = None) -> Selection:
    return select_account(policy, candidates, request or req(), StrategyState(seed=3))


def order_by_failover(policy: PoolPolicy, candidates: list[AccountCandidate]) -> list[int]:
    """The accounts a request would try in turn, each attempt excluding the ones before."""
    index, state = PoolIndex(policy, candidates), StrategyState(seed=1)
    tried: list[int] = []
    while True:
        chosen = select_account(policy, index, req(exclude=frozenset(tried)), state).account_id
        if chosen is None:
            return tried
        tried.append(chosen)


# --- least-used ------------------------------------------------------------------------------------------
def test_least_used_prefers_remaining_capacity() -> None:
    accounts = [
        acct(1, windows=(win(300, 70.0),)),
        acct(2, windows=(win(300, 20.0),)),
        acct(3, windows=(win(300, 45.0),)),
    ]
    assert order_by_failover(pol(), accounts) == [2, 3, 1]


def test_least_used_uses_the_most_used_window() -> None:
    accounts = [
        acct(1, windows=(win(300, 10.0), win(10080, 80.0))),
        acct(2, windows=(win(300, 50.0), win(10080, 50.0))),
    ]
    assert order_by_failover(pol(), accounts) == [2, 1]


def test_least_used_weighs_plans() -> None:
    # pro at 60% used (40 x 4 = 160) beats plus at 0% (100 x 1); free at 0% (25) comes after plus at 50% (50).
    accounts = [
        acct(1, plan_type="plus", windows=(win(300, 0.0),)),
        acct(2, plan_type="pro", windows=(win(300, 60.0),)),
        acct(3, plan_type="free", windows=()),
        acct(4, plan_type="plus", windows=(win(300, 50.0),)),
        acct(5, plan_type="team", windows=(win(300, 0.0),)),
    ]
    assert order_by_failover(pol(), accounts) == [2, 5, 1, 4, 3]


def test_least_used_prefers_the_nearer_weekly_reset_when_close() -> None:
    accounts = [
        acct(1, windows=(win(10080, 40.0, resets_in=5 * 86_400),)),
        acct(2, windows=(win(10080, 41.0, resets_in=86_400),)),  # same bucket, resets sooner
        acct(3, windows=(win(10080, 20.0, resets_in=6 * 86_400),)),  # clearly more room: wins regardless
    ]
    assert order_by_failover(pol(), accounts) == [3, 2, 1]


def test_least_used_spreads_equal_accounts_by_streams_in_flight() -> None:
    # Three fresh accounts at 0%: concurrent new streams go round them, not all to the first.
    index, state, in_flight = PoolIndex(pol(), [acct(1), acct(2), acct(3)]), StrategyState(), Counter[int]()
    for _ in range(30):
        chosen = select_account(pol(), index, req(in_flight=in_flight), state).account_id
        assert chosen is not None
        in_flight[chosen] += 1
    assert sorted(in_flight.values()) == [10, 10, 10]


def test_least_used_spreads_short_requests_by_recent_picks() -> None:
    # Requests that end before the next one starts leave nothing in flight: recent picks separate the equals.
    policy, recent = pol(), RecentPicks()
    index, state, served = PoolIndex(policy, [acct(1), acct(2), acct(3)]), StrategyState(), Counter[int]()
    for n in range(30):
        chosen = select_account(policy, index, req(now=NOW + n, recent=recent), state).account_id
        assert chosen is not None
        recent.add(chosen, NOW + n)
        served[chosen] += 1
    assert sorted(served.values()) == [10, 10, 10]


def test_least_used_ties_are_a_band_of_whole_percents() -> None:
    # 3% and 6% used are equals (within the band), so load decides; 20% is clearly worse and waits.
    accounts = [
        acct(1, windows=(win(300, 3.0),)),
        acct(2, windows=(win(300, 6.0),)),
        acct(3, windows=(win(300, 20.0),)),
    ]
    assert pick(pol(), accounts).account_id == 1  # no load: the better score
    assert pick(pol(), accounts, req(in_flight={1: 1})).account_id == 2
    assert pick(pol(), accounts, req(in_flight={1: 3, 2: 3})).account_id == 1  # equal load: the better score
    assert pick(pol(), accounts, req(in_flight={1: 4, 2: 3})).account_id == 2


def test_least_used_band_does_not_override_plan_weight_or_capacity() -> None:
    # A pro account at 0% (400 points) is not tied with a plus one: it takes streams until its cap.
    policy = pol(max_concurrency_per_account=2)
    accounts = [acct(1, plan_type="plus"), acct(2, plan_type="pro")]
    assert pick(policy, accounts, req(in_flight={2: 1})).account_id == 2
    assert pick(policy, accounts, req(in_flight={2: 2})).account_id == 1


def test_recent_picks_decay() -> None:
    recent = RecentPicks()
    recent.add(7, NOW)
    recent.add(7, NOW)
    assert recent.count(7, NOW) == 2.0
    assert abs(recent.count(7, NOW + RECENT_HALF_LIFE) - 1.0) < 1e-9
    assert recent.count(7, NOW + 20 * RECENT_HALF_LIFE) < 1e-5
    assert recent.count(8, NOW) == 0.0


def test_least_used_treats_a_passed_reset_as_full_capacity() -> None:
    accounts = [acct(1, windows=(win(300, 30.0),)), acct(2, windows=(win(300, 90.0, resets_in=-5.0),))]
    assert pick(pol(), accounts).account_id == 2


# --- primary-first, round-robin, random ------------------------------------------------------------------
def test_primary_first_follows_priority_and_falls_back() -> None:
    accounts = [acct(1, priority=30), acct(2, priority=10), acct(3, priority=20), acct(4, priority=10)]
    assert order_by_failover(pol("primary-first"), accounts) == [2, 4, 3, 1]
    spent = [replace(a, limited_until=NOW + 60) if a.account_id == 2 else a for a in accounts]
    assert pick(pol("primary-first"), spent).account_id == 4


def test_round_robin_is_fair_over_many_calls() -> None:
    policy = pol("round-robin")
    accounts = [acct(i) for i in (5, 1, 9, 3)] + [acct(7, state="paused")]
    index, state = PoolIndex(policy, accounts), StrategyState()
    chosen = [select_account(policy, index, req(), state).account_id for _ in range(400)]
    assert chosen[:5] == [1, 3, 5, 9, 1]
    assert Counter(chosen) == {1: 100, 3: 100, 5: 100, 9: 100}


def test_round_robin_cursor_survives_eligibility_changes() -> None:
    policy = pol("round-robin")
    accounts = [acct(1), acct(2, demoted_until=NOW + 10), acct(3)]
    index, state = PoolIndex(policy, accounts), StrategyState()
    assert [select_account(policy, index, req(), state).account_id for _ in range(3)] == [1, 3, 1]
    later = [select_account(policy, index, req(now=NOW + 20 + i), state).account_id for i in range(3)]
    assert later == [2, 3, 1]  # 2 came back after its demotion, in turn


def test_random_spreads_over_eligible_accounts_only() -> None:
    policy = pol("random")
    accounts = [acct(i) for i in range(1, 6)] + [acct(6, has_token=False)]
    index, state = PoolIndex(policy, accounts), StrategyState(seed=42)
    counts = Counter(select_account(policy, index, req(), state).account_id for _ in range(5000))
    assert set(counts) == {1, 2, 3, 4, 5}
    assert min(counts.values()) > 800
    # With all but one excluded it still finds the last one.
    only = select_account(policy, index, req(exclude=frozenset({1, 2, 3, 4})), state)
    assert only.account_id == 5


def test_unknown_strategy_behaves_as_least_used() -> None:
    accounts = [acct(1, windows=(win(300, 70.0),)), acct(2, windows=(win(300, 20.0),))]
    assert pick(pol("mystery"), accounts).account_id == 2


# --- per-request checks ----------------------------------------------------------------------------------
def test_already_tried_accounts_are_skipped() -> None:
    accounts = [acct(1), acct(2), acct(3)]
    for strategy in ("least-used", "primary-first", "round-robin", "random"):
        assert order_by_failover(pol(strategy), accounts)[:3] != []
        chosen = pick(pol(strategy), accounts, req(exclude=frozenset({1, 3})))
        assert chosen.account_id == 2, strategy


def test_concurrency_cap() -> None:
    policy = pol("primary-first", max_concurrency_per_account=2)
    accounts = [acct(1, priority=1), acct(2, priority=2)]
    assert pick(policy, accounts, req(in_flight={1: 1})).account_id == 1
    assert pick(policy, accounts, req(in_flight={1: 2})).account_id == 2
    full = pick(policy, accounts, req(in_flight={1: 2, 2: 5}))
    assert (full.account_id, full.error) == (None, "concurrency_cap")
    # Busy accounts are not unfit ones: with the free one already tried, it is still "retry shortly".
    tried = pick(policy, accounts, req(in_flight={1: 2}, exclude=frozenset({2})))
    assert (tried.account_id, tried.error) == (None, "concurrency_cap")
    # Nothing but tried accounts left: the cap says nothing.
    gone = pick(policy, accounts, req(in_flight={1: 2}, exclude=frozenset({1, 2})))
    assert gone.error == "no_eligible_account"


def test_concurrency_cap_is_never_exceeded_while_streams_pile_up() -> None:
    for strategy in ("least-used", "primary-first", "round-robin", "random"):
        policy = pol(strategy, max_concurrency_per_account=8)
        index, state, in_flight = PoolIndex(policy, [acct(1), acct(2), acct(3)]), StrategyState(seed=2), Counter[int]()
        for _ in range(24):
            chosen = select_account(policy, index, req(in_flight=in_flight), state).account_id
            assert chosen is not None
            in_flight[chosen] += 1
        assert sorted(in_flight.values()) == [8, 8, 8], strategy
        assert select_account(policy, index, req(in_flight=in_flight), state).error == "concurrency_cap"


def test_workers_sharing_the_cap_together_never_exceed_it() -> None:
    # Three workers, each counting only its own streams: each fills its share, and the accounts see at most the cap.
    policy = pol("least-used", max_concurrency_per_account=8)
    index = PoolIndex(policy, [acct(1), acct(2)])
    upstream = Counter[int]()
    for worker in range(3):
        state, own = StrategyState(seed=worker), Counter[int]()
        mine = req(in_flight=own, cap_workers=3)
        while (chosen := select_account(policy, index, mine, state).account_id) is not None:
            own[chosen] += 1
            upstream[chosen] += 1
        assert sorted(own.values()) == [2, 2]  # 8 // 3 per account
    assert all(n <= 8 for n in upstream.values()) and sum(upstream.values()) == 12
    assert [worker_cap(8, n) for n in (1, 2, 3, 8, 9)] == [8, 4, 2, 1, 1]  # never 0: a worker can always serve
    assert worker_cap(None, 4) is None


# --- stickiness ------------------------------------------------------------------------------------------
def test_sticky_account_is_kept_while_eligible() -> None:
    accounts = [acct(1, windows=(win(300, 90.0),)), acct(2, windows=(win(300, 0.0),))]
    kept = pick(pol(), accounts, req(sticky_account_id=1))
    assert (kept.account_id, kept.sticky_kept, kept.sticky_moved) == (1, True, False)
    fresh = pick(pol(), accounts)
    assert (fresh.account_id, fresh.sticky_kept, fresh.sticky_moved) == (2, False, False)


def test_session_moves_once_when_its_account_becomes_ineligible_and_stays() -> None:
    policy = pol()
    accounts = [
        acct(1, windows=(win(300, 10.0),)),
        acct(2, windows=(win(300, 50.0),)),
        acct(3, windows=(win(300, 60.0),)),
    ]
    state = StrategyState()
    sticky = select_account(policy, accounts, req(), state).account_id
    assert sticky == 1
    spent = [replace(a, limited_until=NOW + 600) if a.account_id == 1 else a for a in accounts]
    index = PoolIndex(policy, spent)
    moved = select_account(policy, index, req(sticky_account_id=sticky), state)
    assert (moved.account_id, moved.sticky_kept, moved.sticky_moved) == (2, False, True)
    for turn in range(20):
        again = select_account(policy, index, req(now=NOW + turn, sticky_account_id=moved.account_id), state)
        assert (again.account_id, again.sticky_kept, again.sticky_moved) == (2, True, False)


def test_sticky_account_already_tried_moves_the_session() -> None:
    moved = pick(pol(), [acct(1), acct(2)], req(sticky_account_id=1, exclude=frozenset({1})))
    assert (moved.account_id, moved.sticky_moved) == (2, True)


def test_sticky_account_at_its_cap_overflows_without_moving_the_session() -> None:
    policy = pol(max_concurrency_per_account=1)
    over = pick(policy, [acct(1), acct(2)], req(sticky_account_id=1, in_flight={1: 1}))
    assert (over.account_id, over.sticky_kept, over.sticky_moved, over.sticky_full) == (2, False, False, True)
    # Once a stream ends there, the session is back on its account.
    back = pick(policy, [acct(1), acct(2)], req(sticky_account_id=1, in_flight={1: 0, 2: 1}))
    assert (back.account_id, back.sticky_kept) == (1, True)


def test_sticky_sessions_stay_while_new_sessions_spread() -> None:
    policy = pol()
    index, state, in_flight = PoolIndex(policy, [acct(1), acct(2), acct(3)]), StrategyState(), Counter[int]()
    in_flight[1] = 5  # five open streams of sessions already on account 1
    for _ in range(5):
        kept = select_account(policy, index, req(sticky_account_id=1, in_flight=in_flight), state)
        assert (kept.account_id, kept.sticky_kept) == (1, True)
        in_flight[1] += 1
    fresh = [select_account(policy, index, req(in_flight=in_flight), state).account_id for _ in range(2)]
    assert set(fresh) <= {2, 3}


def test_sticky_account_unknown_to_the_pool_moves() -> None:
    moved = pick(pol(), [acct(1)], req(sticky_account_id=99))
    assert (moved.account_id, moved.sticky_kept, moved.sticky_moved) == (1, False, True)


def test_nothing_eligible_reports_no_move() -> None:
    stuck = pick(pol(), [acct(1, limited_until=NOW + 60)], req(sticky_account_id=1))
    assert (stuck.account_id, stuck.sticky_kept, stuck.sticky_moved) == (None, False, False)


# --- failures --------------------------------------------------------------------------------------------
def test_pool_paused_and_model_not_allowed() -> None:
    assert pick(pol(pool_status="paused"), [acct(1)]).error == "pool_paused"
    assert pick(pol(pool_status="archived"), [acct(1)]).error == "pool_paused"
    limited = pol(allowed_models=frozenset({"gpt-5"}))
    assert pick(limited, [acct(1)]).error == "model_not_allowed"
    assert pick(limited, [acct(1)], req(model="gpt-5")).account_id == 1


def test_usage_limit_reached_with_the_earliest_reset() -> None:
    accounts = [
        acct(1, limited_until=NOW + 900),
        acct(2, windows=(win(300, 100.0, resets_in=300.0),)),
        acct(3, windows=(win(10080, 100.0, resets_in=86_400.0), win(300, 100.0, resets_in=60.0))),
        acct(4, state="reauth_required"),  # out of service: does not stand in the way
        acct(5, has_token=False),
    ]
    result = pick(pol(primary_cap_percent=90.0), accounts)
    assert (result.account_id, result.error, result.earliest_reset) == (None, "usage_limit_reached", NOW + 300.0)


def test_usage_limit_reached_counts_caps() -> None:
    result = pick(pol(primary_cap_percent=80.0), [acct(1, windows=(win(300, 85.0, resets_in=120.0),))])
    assert (result.error, result.earliest_reset) == ("usage_limit_reached", NOW + 120.0)


def test_usage_limit_reached_without_a_known_reset() -> None:
    result = pick(pol(), [acct(1, windows=(win(300, 100.0, resets_in=None),))])
    assert (result.error, result.earliest_reset) == ("usage_limit_reached", None)


def test_a_transient_reason_makes_it_no_eligible_account() -> None:
    # One account spent for an hour, another demoted for 30 s: telling the client to wait an hour would be wrong.
    for other in (
        acct(2, demoted_until=NOW + 30),
        acct(2, refresh_requested=True),
        acct(2, access_token_expires_at=NOW - 1),
    ):
        result = pick(pol(), [acct(1, limited_until=NOW + 3600), other])
        assert (result.account_id, result.error, result.earliest_reset) == (None, "no_eligible_account", None)


def test_all_tried_is_no_eligible_account_unless_spent() -> None:
    accounts = [acct(1), acct(2)]
    assert pick(pol(), accounts, req(exclude=frozenset({1, 2}))).error == "no_eligible_account"
    spent = [acct(1, limited_until=NOW + 60), acct(2, limited_until=NOW + 30)]
    result = pick(pol(), spent, req(exclude=frozenset({1})))
    assert (result.error, result.earliest_reset) == ("usage_limit_reached", NOW + 30)


def test_no_serving_account_is_no_eligible_account() -> None:
    assert pick(pol(), []).error == "no_eligible_account"
    assert pick(pol(), [acct(1, state="paused"), acct(2, assignment_status="paused")]).error == "no_eligible_account"


# --- the index over time ---------------------------------------------------------------------------------
def test_index_view_follows_the_clock() -> None:
    policy = pol(stale_after_seconds=1000.0)
    accounts = [
        acct(1, windows=(win(300, 100.0, resets_in=100.0),)),
        acct(2, windows=(win(300, 100.0, resets_in=None, age=500.0),)),  # goes stale at NOW + 500
        acct(3, access_token_expires_at=NOW + 50),
    ]
    index, state = PoolIndex(policy, accounts), StrategyState()

    def at(t: float) -> Selection:
        return select_account(policy, index, req(now=NOW + t), state)

    assert at(0).account_id == 3
    assert (at(60).account_id, at(60).error) == (None, "no_eligible_account")  # 3's token expired at +50
    assert at(100).account_id == 1  # reset passed
    assert at(30).account_id == 3  # clock going back recomputes too
    spent_only = PoolIndex(policy, accounts[:2])
    early = select_account(policy, spent_only, req(now=NOW + 60), state)
    assert (early.error, early.earliest_reset) == ("usage_limit_reached", NOW + 100)
    only_stale = PoolIndex(policy, accounts[1:2])
    assert select_account(policy, only_stale, req(now=NOW + 499), state).account_id is None
    assert select_account(policy, only_stale, req(now=NOW + 500), state).account_id == 2


def test_request_staleness_override_is_honoured_by_the_index() -> None:
    policy = pol()
    index = PoolIndex(policy, [acct(1, windows=(win(300, 100.0, resets_in=None, age=7200.0),))])
    assert select_account(policy, index, req(), StrategyState()).account_id is None
    assert select_account(policy, index, req(stale_after_seconds=3600.0), StrategyState()).account_id == 1


def test_an_index_built_for_another_policy_is_rebuilt() -> None:
    accounts = [acct(1, windows=(win(300, 85.0),))]
    index = PoolIndex(pol(), accounts)
    assert select_account(pol(primary_cap_percent=80.0), index, req(), StrategyState()).account_id is None
    assert select_account(pol(), index, req(), StrategyState()).account_id == 1


def test_a_caller_that_cannot_count_streams_skips_the_cap_but_still_breaks_ties() -> None:
    policy = pol(max_concurrency_per_account=1)
    accounts = [acct(1), acct(2)]
    loose = pick(policy, accounts, req(in_flight={1: 5, 2: 3}, enforce_cap=False))
    assert (loose.account_id, loose.error) == (2, None)
    assert pick(policy, accounts, req(in_flight={1: 5, 2: 3})).error == "concurrency_cap"


def test_an_account_is_skipped_only_for_the_model_the_upstream_excluded() -> None:
    """429 usage_not_included (until cleared) or a per-model limit family (until its reset): that model only."""
    policy = pol("primary-first")
    candidates = [acct(1, priority=1, excluded_models=(("big", None), ("mini", NOW + 60))), acct(2, priority=2)]

    def pick(model: str, now: float = NOW) -> int | None:
        return select_account(policy, candidates, req(model=model, now=now), StrategyState()).account_id

    assert pick("big") == 2
    assert pick("mini") == 2
    assert pick("mini", NOW + 61) == 1  # a per-model limit ends at its reset
    assert pick("other") == 1
    only = [acct(1, excluded_models=(("big", None),))]
    assert select_account(policy, only, req(model="big"), StrategyState()).account_id is None
    assert ineligibility(only[0], policy, req(model="big")) == "model_not_included"
