"""Account selection policy: pure functions over plain data (no I/O, no ORM), fast enough for the hot path.

The ext_proc builds a `PoolIndex` per pool on each snapshot reload, keeps a `StrategyState` per pool, and
calls `select_account` once per upstream attempt.
"""

from __future__ import annotations

from pooler.selection.eligibility import explain, ineligibility
from pooler.selection.index import PoolIndex, PoolView
from pooler.selection.pooled import PooledUsage, PooledWindow, pooled_usage, pooled_usage_payload
from pooler.selection.select import select_account
from pooler.selection.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    RoutingStrategy,
    StrategyState,
    named_strategy,
    strategy_for,
)
from pooler.selection.types import AccountCandidate, PoolPolicy, Selection, SelectionRequest, WindowView, worker_cap

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "AccountCandidate",
    "PoolIndex",
    "PoolPolicy",
    "PoolView",
    "PooledUsage",
    "PooledWindow",
    "RoutingStrategy",
    "Selection",
    "SelectionRequest",
    "StrategyState",
    "WindowView",
    "explain",
    "ineligibility",
    "named_strategy",
    "pooled_usage",
    "pooled_usage_payload",
    "select_account",
    "strategy_for",
    "worker_cap",
]
