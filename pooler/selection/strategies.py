"""Strategies: walk a `PoolView` and return the first account that passes the per-request checks.

All four share the per-request checks (not already tried, under the concurrency cap); they differ in where
the walk starts:
- least-used / primary-first: the view's precomputed order (see `scoring` for least-used's key;
  primary-first is assignment priority, then account id), so failover falls to the next one;
- round-robin: just after the last account this pool handed out, in account-id order; the cursor is an
  account id, not a position, so it stays fair when the view is recomputed;
- random: uniform over the eligible accounts, a few draws, then a walk from a random offset.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Mapping

from pooler.selection.index import PoolView
from pooler.states import Strategy


class StrategyState:
    """Mutable per-pool state owned by the caller (keep one per pool for the life of the process)."""

    __slots__ = ("last_round_robin", "rng")

    def __init__(self, seed: int | None = None) -> None:
        self.last_round_robin: int | None = None
        self.rng = random.Random(seed)


Picker = Callable[[PoolView, frozenset[int], Mapping[int, int], "int | None", StrategyState], "int | None"]


def pick_ordered(
    view: PoolView, exclude: frozenset[int], in_flight: Mapping[int, int], cap: int | None, state: StrategyState
) -> int | None:
    for aid in view.order:
        if aid in exclude or (cap is not None and in_flight.get(aid, 0) >= cap):
            continue
        return aid
    return None


def pick_round_robin(
    view: PoolView, exclude: frozenset[int], in_flight: Mapping[int, int], cap: int | None, state: StrategyState
) -> int | None:
    ring = view.ring
    n = len(ring)
    last = state.last_round_robin
    start = 0 if last is None else bisect_right(ring, last)
    for step in range(n):
        aid = ring[(start + step) % n]
        if aid in exclude or (cap is not None and in_flight.get(aid, 0) >= cap):
            continue
        state.last_round_robin = aid
        return aid
    return None


_RANDOM_DRAWS = 3


def pick_random(
    view: PoolView, exclude: frozenset[int], in_flight: Mapping[int, int], cap: int | None, state: StrategyState
) -> int | None:
    ring = view.ring
    n = len(ring)
    if n == 0:
        return None
    draw = state.rng.random
    # A few independent draws keep the choice uniform in the common case (nothing or little excluded).
    for _ in range(_RANDOM_DRAWS):
        aid = ring[int(draw() * n)]
        if aid in exclude or (cap is not None and in_flight.get(aid, 0) >= cap):
            continue
        return aid
    start = int(draw() * n)
    for step in range(n):
        aid = ring[(start + step) % n]
        if aid in exclude or (cap is not None and in_flight.get(aid, 0) >= cap):
            continue
        return aid
    return None


PICKERS: dict[str, Picker] = {
    Strategy.LEAST_USED.value: pick_ordered,
    Strategy.PRIMARY_FIRST.value: pick_ordered,
    Strategy.ROUND_ROBIN.value: pick_round_robin,
    Strategy.RANDOM.value: pick_random,
}


def picker_for(strategy: str) -> Picker:
    """Unknown strategies fall back to least-used (the index orders them that way too)."""
    return PICKERS.get(strategy, pick_ordered)
