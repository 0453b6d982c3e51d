"""Selection cost per call for pools of 10, 100 and 1,000 accounts (`python -m bench.selection_bench`).

Target: <= 50 µs per selection for 1,000 accounts. Measures the hot path as the ext_proc uses it (one
PoolIndex per snapshot, reused across calls), per strategy, plus the cases that walk further: a sticky hit,
a failover excluding tried accounts, and a pool where 90% of accounts are spent. Also prints the one-off costs
(building the index, recomputing a view after a quota event).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial

from pooler.selection import (
    STRATEGIES,
    AccountCandidate,
    PoolIndex,
    PoolPolicy,
    SelectionRequest,
    StrategyState,
    WindowView,
    select_account,
)

NOW = 1_800_000_000.0
PLANS = ("plus", "pro", "team", "free", "go", None)


def make_candidates(n: int, spent_fraction: float = 0.1, seed: int = 7) -> list[AccountCandidate]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        spent = rng.random() < spent_fraction
        five = 100.0 if spent else rng.uniform(0, 95)
        out.append(
            AccountCandidate(
                account_id=i + 1,
                label=f"acct-{i + 1}",
                plan_type=rng.choice(PLANS),
                state="active",
                assignment_status="active",
                priority=rng.randrange(10),
                access_token_expires_at=NOW + 86_400,
                demoted_until=None,
                limited_until=None,
                refresh_requested=False,
                has_token=True,
                windows=(
                    WindowView(300, five, NOW + rng.uniform(60, 18_000), NOW - rng.uniform(0, 3_000)),
                    WindowView(
                        10080, rng.uniform(0, 90), NOW + rng.uniform(3_600, 604_800), NOW - rng.uniform(0, 3_000)
                    ),
                ),
            )
        )
    return out


def per_call_us(fn: Callable[[], object], budget_s: float = 0.4) -> float:
    for _ in range(200):
        fn()
    iterations = 0
    start = time.perf_counter()
    deadline = start + budget_s
    while True:
        for _ in range(500):
            fn()
        iterations += 500
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / iterations * 1e6


def policy_for(strategy: str) -> PoolPolicy:
    return PoolPolicy(
        pool_status="active",
        strategy=strategy,
        primary_cap_percent=95.0,
        secondary_cap_percent=100.0,
        allowed_models=frozenset({"gpt-5-codex", "gpt-5"}),
        max_concurrency_per_account=8,
        sticky_ttl_seconds=3600,
        stale_after_seconds=3600.0,
    )


def bench_size(n: int) -> dict[str, float]:
    """Every case for one pool size (a function, so the closures bind this size's objects)."""
    out: dict[str, float] = {}
    candidates = make_candidates(n)
    in_flight = {c.account_id: 1 for c in candidates[::3]}
    for strategy in STRATEGIES:  # every registered strategy, so a new one is measured too
        strat_policy = policy_for(strategy)
        strat_index = PoolIndex(strat_policy, candidates)
        strat_state = StrategyState(seed=1)
        request = SelectionRequest(now=NOW, model="gpt-5-codex", in_flight=in_flight)
        out[strategy] = per_call_us(partial(select_account, strat_policy, strat_index, request, strat_state))
    policy = policy_for("least-used")
    index = PoolIndex(policy, candidates)
    state = StrategyState(seed=1)
    plain = SelectionRequest(now=NOW, model="gpt-5-codex")
    first = select_account(policy, index, plain, state).account_id
    sticky = SelectionRequest(now=NOW, model="gpt-5-codex", sticky_account_id=first, in_flight=in_flight)
    out["least-used, sticky hit"] = per_call_us(lambda: select_account(policy, index, sticky, state))
    tried = frozenset(index.view(NOW, 3600.0).order[:2])
    failover = SelectionRequest(now=NOW, model="gpt-5-codex", exclude=tried, sticky_account_id=first)
    out["least-used, failover (2 tried)"] = per_call_us(lambda: select_account(policy, index, failover, state))
    spent_index = PoolIndex(policy, make_candidates(n, spent_fraction=0.9))
    out["least-used, 90% spent"] = per_call_us(lambda: select_account(policy, spent_index, plain, state))
    all_spent = PoolIndex(policy, make_candidates(n, spent_fraction=1.0))
    out["all spent -> usage_limit_reached"] = per_call_us(lambda: select_account(policy, all_spent, plain, state))

    moving = PoolIndex(policy, candidates)
    clock = [NOW]

    def advancing() -> None:
        # 1,000 requests/s: resets and staleness boundaries pass now and then, each forcing a view recompute.
        clock[0] += 0.001
        select_account(policy, moving, SelectionRequest(now=clock[0], model="gpt-5-codex"), state)

    out["least-used, clock moving 1k req/s"] = per_call_us(advancing, budget_s=1.0)
    out["one-off: build PoolIndex"] = per_call_us(lambda: PoolIndex(policy, candidates), budget_s=0.3)

    def recompute() -> None:
        index._view = None  # force the once-per-quota-event work
        index.view(NOW, 3600.0)

    out["one-off: recompute view"] = per_call_us(recompute, budget_s=0.3)
    return out


def main() -> None:
    sizes = (10, 100, 1000)
    results = [bench_size(n) for n in sizes]
    print(f"{'case (µs per call)':<36}" + "".join(f"{f'{n} acc':>12}" for n in sizes))
    for name in results[0]:
        print(f"{name:<36}" + "".join(f"{r[name]:>12.2f}" for r in results))


if __name__ == "__main__":
    main()
