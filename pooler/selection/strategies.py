"""Strategies: each one object, registered once in `STRATEGIES`, that the index, the pick, the admin form, the CLI,
the pool-settings validation and the docs all read (adding a strategy is one `Strategy` name and one entry here).

A strategy is how its `PoolView` is ordered (`ViewOrder`, used by `index`) plus a picker that walks the view
and returns the first account that passes the per-request checks. All four share those checks (not already
tried, under the concurrency cap); they differ in where the walk starts:
- least-used: the view's precomputed order (see `scoring`), except that the accounts within the tie band of
  the best usable one are equals, taken by fewest streams in flight, then fewest recent picks (among at most
  TIE_MAX_EQUALS of them, and the first idle one ends the walk);
- primary-first: the view's order (assignment priority, then account id), so failover falls to the next one;
- round-robin: just after the last account this pool handed out, in account-id order; the cursor is an
  account id, not a position, so it stays fair when the view is recomputed;
- random: uniform over the eligible accounts, a few draws, then a walk from a random offset.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from pooler.selection.scoring import TIE_BAND, TIE_MAX_EQUALS
from pooler.selection.types import SelectionRequest
from pooler.states import Strategy

if TYPE_CHECKING:
    # `index` reads the registry to order its views; the pickers only annotate with its view.
    from pooler.selection.index import PoolView


class StrategyState:
    """Mutable per-pool state owned by the caller (keep one per pool for the life of the process)."""

    __slots__ = ("last_round_robin", "rng")

    def __init__(self, seed: int | None = None) -> None:
        self.last_round_robin: int | None = None
        self.rng = random.Random(seed)


Picker = Callable[["PoolView", SelectionRequest, "int | None", StrategyState], "int | None"]


def usable(aid: int, request: SelectionRequest, cap: int | None) -> bool:
    """The per-request checks: not tried for this request, under the concurrency cap."""
    return aid not in request.exclude and (cap is None or request.in_flight.get(aid, 0) < cap)


def pick_ordered(view: PoolView, request: SelectionRequest, cap: int | None, state: StrategyState) -> int | None:
    for aid in view.order:
        if usable(aid, request, cap):
            return aid
    return None


def pick_least_used(view: PoolView, request: SelectionRequest, cap: int | None, state: StrategyState) -> int | None:
    scores = view.scores
    if len(scores) != len(view.order):
        return pick_ordered(view, request, cap, state)
    in_flight, recent, now = request.in_flight, request.recent, request.now
    best: int | None = None
    best_key: tuple[int, float] = (0, 0.0)
    floor = 0.0
    equals = 0
    for position, aid in enumerate(view.order):
        if best is not None and scores[position] < floor:
            break  # past the band: the rest are clearly worse
        if not usable(aid, request, cap):
            continue
        key = (in_flight.get(aid, 0), 0.0 if recent is None else recent.count(aid, now))
        if best is None:
            best, best_key, floor = aid, key, scores[position] - TIE_BAND
        elif key < best_key:  # ties keep the earlier (better-scored) account
            best, best_key = aid, key
        equals += 1
        if equals >= TIE_MAX_EQUALS or best_key == (0, 0.0):
            break  # enough to spread over (or an idle one found): the walk stays O(1) in big fresh pools
    return best


def pick_round_robin(view: PoolView, request: SelectionRequest, cap: int | None, state: StrategyState) -> int | None:
    ring = view.ring
    n = len(ring)
    last = state.last_round_robin
    start = 0 if last is None else bisect_right(ring, last)
    for step in range(n):
        aid = ring[(start + step) % n]
        if usable(aid, request, cap):
            state.last_round_robin = aid
            return aid
    return None


_RANDOM_DRAWS = 3


def pick_random(view: PoolView, request: SelectionRequest, cap: int | None, state: StrategyState) -> int | None:
    ring = view.ring
    n = len(ring)
    if n == 0:
        return None
    draw = state.rng.random
    # A few independent draws keep the choice uniform in the common case (nothing or little excluded).
    for _ in range(_RANDOM_DRAWS):
        aid = ring[int(draw() * n)]
        if usable(aid, request, cap):
            return aid
    start = int(draw() * n)
    for step in range(n):
        aid = ring[(start + step) % n]
        if usable(aid, request, cap):
            return aid
    return None


class ViewOrder(Enum):
    """How the index orders a strategy's view of the eligible accounts."""

    SCORE = "score"
    """Best least-used score first (then priority, then id), with the scores kept for the tie band."""
    PRIORITY = "priority"
    """Assignment priority, then account id."""
    RING = "ring"
    """Account id ascending (the view's ring itself)."""


@dataclass(frozen=True, slots=True)
class RoutingStrategy:
    """One routing strategy, whole: its stored name, the line operators read, its view order and its picker."""

    name: Strategy
    label: str
    """What it does, in a few words, for the admin form and the CLI help."""
    order: ViewOrder
    pick: Picker


STRATEGIES: Mapping[str, RoutingStrategy] = {
    s.name.value: s
    for s in (
        RoutingStrategy(Strategy.LEAST_USED, "spreads load by remaining quota", ViewOrder.SCORE, pick_least_used),
        RoutingStrategy(Strategy.ROUND_ROBIN, "takes the accounts in turn", ViewOrder.RING, pick_round_robin),
        RoutingStrategy(Strategy.PRIMARY_FIRST, "drains accounts by priority", ViewOrder.PRIORITY, pick_ordered),
        RoutingStrategy(Strategy.RANDOM, "picks a uniformly random account", ViewOrder.RING, pick_random),
    )
}
"""Every strategy, by stored name, in the order they are offered."""

DEFAULT_STRATEGY = STRATEGIES[Strategy.LEAST_USED]


def strategy_for(name: str) -> RoutingStrategy:
    """The strategy a pool's stored name selects. Unknown names route as the default: the database check is
    the settings validation (`named_strategy`), so a stray value must not stop a pool from serving."""
    return STRATEGIES.get(name, DEFAULT_STRATEGY)


def named_strategy(name: str) -> Strategy:
    """The registered strategy called `name`, or ValueError naming the choices (for input validation)."""
    found = STRATEGIES.get(str(name))
    if found is None:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return found.name
