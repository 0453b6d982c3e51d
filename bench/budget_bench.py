"""Cost of the key-budget hooks per request (`python -m bench.budget_bench`).

The ext_proc calls `BudgetCounters.check` on a request's first attempt (after the key is authenticated) and
`BudgetCounters.add` once per request from the access log. Measured: a key without budgets (the common case),
a key with one budget and with all six (day/week/month x tokens/usd), within and over its limits (the refusal
builds the 429), and `add` for a budgeted key. 1,000 budgeted keys in the book, as a larger deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from extproc.budgets import BudgetCounters
from pooler.budgets import Budget, Period, Unit, Usage, period_bounds
from pooler.gateway.budgets import BudgetBook, KeyBudgets
from pooler.pricing import vendored

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


def main() -> None:
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
    for name, fn in rows:
        print(f"{name:34s} {per_call(fn, 20_000 if 'over' in name else 100_000):7.2f} µs")


if __name__ == "__main__":
    main()
