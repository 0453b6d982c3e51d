"""Key budgets on the hot path: in-memory usage per budgeted key and period, fed by the access log (one entry per
request, so retries and failovers count once) and reconciled from the database (pooler.gateway.budgets).

The check runs on a request's first attempt only, after the key is authenticated: a dict lookup for a key
without budgets; for a budgeted key, one compare per budget (period bounds are cached until the period ends).
A refusal is a Codex-shaped 429 (`type` usage_limit_reached, so Codex stops and shows the reset, instead of
retrying) with the code `budget_exceeded`, the period, and when it resets; it never reaches the upstream.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from extproc import responses
from pooler.budgets import Budget, BudgetState, Period, Usage, describe, period_bounds, state_payload
from pooler.gateway.budgets import BudgetBook, request_usage

BUDGET_EXCEEDED = "budget_exceeded"


class BudgetCounters:
    """Usage per (key prefix, period) since the period's start, as this process knows it. Keyed by the period's
    plain string (an Enum member hashes in Python: ~4x slower as a dict key on this path)."""

    __slots__ = ("_book", "_bounds", "_plans", "_used")

    def __init__(self) -> None:
        self._book = BudgetBook()
        self._plans: dict[str, tuple[ZoneInfo, tuple[tuple[str, Budget], ...], frozenset[str]]] = {}
        """prefix -> (its zone, (period, budget) per budget, its periods)."""
        self._used: dict[tuple[str, str], tuple[float, Usage]] = {}
        self._bounds: dict[tuple[ZoneInfo, str], tuple[float, float]] = {}
        """(zone, period) -> the current period's start and end."""

    def seed(self, book: BudgetBook) -> None:
        """Takes the newer book (keys, prices) and, per key and period, the larger of the database's usage and
        this process's count: the database holds every replica's requests, this process may hold requests not
        yet written."""
        self._book = book
        self._plans = {
            prefix: (
                entry.tz,
                tuple((str(b.period.value), b) for b in entry.budgets),
                frozenset(str(p.value) for p in entry.periods),
            )
            for prefix, entry in book.keys.items()
        }
        for (prefix, period), (start, db) in book.used.items():
            slot = (prefix, str(period.value))
            have = self._used.get(slot)
            if have is None or have[0] != start:
                self._used[slot] = (start, db)
            else:
                mine = have[1]
                self._used[slot] = (start, Usage(max(mine.tokens, db.tokens), max(mine.usd, db.usd)))

    def add(self, prefix: str, model: str | None, tokens: Mapping[str, int], now: float) -> None:
        plan = self._plans.get(prefix)
        if plan is None:
            return
        usage = request_usage(
            self._book.prices,
            model,
            tokens.get("input_tokens", 0),
            tokens.get("cached_tokens", 0),
            tokens.get("output_tokens", 0),
        )
        if not usage.tokens and not usage.usd:
            return
        tz, _, periods = plan
        for period in periods:
            start = self._period(tz, period, now)[0]
            have = self._used.get((prefix, period))
            before = have[1] if have is not None and have[0] == start else Usage()
            self._used[(prefix, period)] = (start, before + usage)

    def states(self, prefix: str, now: float) -> list[BudgetState]:
        plan = self._plans.get(prefix)
        if plan is None:
            return []
        tz, budgets, _ = plan
        out = []
        for period, budget in budgets:
            start, end = self._period(tz, period, now)
            have = self._used.get((prefix, period))
            used = have[1].amount(budget.unit) if have is not None and have[0] == start else 0.0
            out.append(BudgetState(budget, used, start, end))
        return out

    def check(self, prefix: str, routing: Mapping[str, Any], now: float) -> ProcessingResponse | None:
        """None: within every hard limit. Else the 429 that names the exceeded budget that resets last."""
        plan = self._plans.get(prefix)
        if plan is None:
            return None
        tz, budgets, _ = plan
        refused: BudgetState | None = None
        for period, budget in budgets:
            hard = budget.hard
            if hard is None:
                continue
            have = self._used.get((prefix, period))
            if have is None:
                continue
            start, end = self._period(tz, period, now)
            if have[0] != start:
                continue
            used = have[1].amount(budget.unit)
            if used >= hard and (refused is None or end > refused.resets_at):
                refused = BudgetState(budget, used, start, end)
        return None if refused is None else refusal_reply(refused, routing, now)

    def _period(self, tz: ZoneInfo, period: str, now: float) -> tuple[float, float]:
        cached = self._bounds.get((tz, period))
        if cached is None or not cached[0] <= now < cached[1]:
            cached = self._bounds[(tz, period)] = period_bounds(Period(period), now, tz)
        return cached


def refusal_reply(state: BudgetState, routing: Mapping[str, Any], now: float) -> ProcessingResponse:
    wait = max(1, math.ceil(state.resets_at - now))
    error = {
        "type": "usage_limit_reached",
        "code": BUDGET_EXCEEDED,
        "message": describe(state),
        "param": None,
        "budget": state_payload(state, now),
        "resets_at": int(state.resets_at),
        "resets_in_seconds": wait,
    }
    body = json.dumps({"error": error}, separators=(",", ":")).encode()
    return responses.immediate(
        429,
        body,
        {**routing, "error": BUDGET_EXCEEDED},
        {"retry-after": str(wait)},
        details=f"pooler_{BUDGET_EXCEEDED}",
    )
