"""Cost of the key-budget and quota-share hooks per request (`python -m bench.budget_bench`).

The ext_proc calls `BudgetCounters.check` on a request's first attempt (after the key is authenticated) and
`BudgetCounters.add` once per request from the access log. Measured: a key without budgets (the common case),
a key with one budget and with all six (day/week/month x tokens/usd), within and over its limits (the refusal
builds the 429), and `add` for a budgeted key. 1,000 budgeted keys in the book, as a larger deployment.
Quota share (`ShareGate.check`): a pool of 20 accounts and 50 share groups, measured once a second (cached), and
the measure itself (what the first request of each second pays).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from bench.selection_bench import make_candidates, policy_for
from extproc.budgets import BudgetCounters
from extproc.share import ShareGate
from pooler.budgets import Budget, Period, Unit, Usage, period_bounds
from pooler.gateway.budgets import BudgetBook, KeyBudgets, KeyShare
from pooler.gateway.snapshot import PoolEntry
from pooler.pricing import vendored
from pooler.selection import PoolIndex, StrategyState

NOW = 1_800_000_000.0
TZ = ZoneInfo("Europe/Berlin")
ALL = tuple(Budget(p, u, 10**12 if u is Unit.TOKENS else 10**6, None) for p in Period for u in Unit)


def book(used: Usage) -> BudgetBook:
    keys = {f"cpk_{i:08d}": KeyBudgets(i, f"cpk_{i:08d}", TZ, ALL) for i in range(1000)}
    keys["cpk_one"] = KeyBudgets(5000, "cpk_one", TZ, (Budget(Period.DAY, Unit.TOKENS, 10**9, None),))
    keys["cpk_over"] = KeyBudgets(5001, "cpk_over", TZ, (Budget(Period.DAY, Unit.TOKENS, 10, None),))
    usage = {(prefix, period): (period_bounds(period, NOW, TZ)[0], used) for prefix in keys for period in Period}
    return BudgetBook(keys, vendored(), usage)


def per_call(fn: Callable[[], object], n: int = 100_000) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def share_case() -> tuple[ShareGate, PoolEntry]:
    now = NOW
    candidates = tuple(make_candidates(20, spent_fraction=0.0))
    policy = policy_for("least-used")
    pool = PoolEntry(1, "p", policy, 3, candidates, candidates, PoolIndex(policy, candidates), StrategyState())
    groups = {f"cpk_s{g:04d}": (1, f"key:cpk_s{g:04d}") for g in range(50)}
    shares = {p: KeyShare(1, 30.0, group, False) for p, (_, group) in groups.items()}
    tokens = {
        (i, m): (now - 60, {group: 1000 + g for g, (_, group) in enumerate(groups.values())})
        for i in range(1, 21)
        for m in (300, 10080)
    }
    gate = ShareGate()
    gate.seed(BudgetBook(shares=shares, groups=groups, share_tokens=tokens))
    return gate, pool


def measure_fresh(gate: ShareGate, pool: PoolEntry) -> object:
    gate._measures.clear()
    return gate.uses(pool, NOW)


def main() -> None:
    gate, pool = share_case()
    share_rows = [
        ("share check, cached measure", lambda: gate.check("cpk_s0001", pool, {}, NOW)),
        ("share check, no share", lambda: gate.check("cpk_none", pool, {}, NOW)),
        ("share measure (once a second)", lambda: measure_fresh(gate, pool)),
    ]
    counters = BudgetCounters()
    counters.seed(book(Usage(1000, 0.5)))
    routing = {"pool_id": 1, "key_id": 5001, "key_prefix": "cpk_over", "route_family": "responses"}
    tokens = {"input_tokens": 12000, "cached_tokens": 8000, "output_tokens": 400, "total_tokens": 12400}
    rows = [
        ("check, key without budgets", lambda: counters.check("cpk_none", routing, NOW)),
        ("check, one budget, within", lambda: counters.check("cpk_one", routing, NOW)),
        ("check, six budgets, within", lambda: counters.check("cpk_00000001", routing, NOW)),
        ("check, over: builds the 429", lambda: counters.check("cpk_over", routing, NOW)),
        ("add (access log), six budgets", lambda: counters.add("cpk_00000002", "gpt-5-codex", tokens, NOW)),
        ("add (access log), no budgets", lambda: counters.add("cpk_none", "gpt-5-codex", tokens, NOW)),
    ]
    for name, fn in [*rows, *share_rows]:
        print(f"{name:34s} {per_call(fn, 2_000 if 'over' in name or 'measure' in name else 100_000):7.2f} µs")


if __name__ == "__main__":
    main()
