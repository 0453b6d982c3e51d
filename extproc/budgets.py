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
from pooler.budgets import BudgetState, Period, Usage, describe, period_bounds, refusal, state_payload
from pooler.gateway.budgets import BudgetBook, KeyBudgets, request_usage

BUDGET_EXCEEDED = "budget_exceeded"


class BudgetCounters:
    """Usage per (key prefix, period) since the period's start, as this process knows it."""

    __slots__ = ("_book", "_bounds", "_used")

    def __init__(self) -> None:
        self._book = BudgetBook()
        self._used: dict[tuple[str, Period], tuple[float, Usage]] = {}
        self._bounds: dict[tuple[str, Period], tuple[float, float]] = {}
        """(zone name, period) -> the current period's start and end."""

    def seed(self, book: BudgetBook) -> None:
        """Takes the newer book (keys, prices) and, per key and period, the larger of the database's usage and
        this process's count: the database holds every replica's requests, this process may hold requests not
        yet written."""
        self._book = book
        for slot, (start, db) in book.used.items():
            have = self._used.get(slot)
            if have is None or have[0] != start:
                self._used[slot] = (start, db)
            else:
                mine = have[1]
                self._used[slot] = (start, Usage(max(mine.tokens, db.tokens), max(mine.usd, db.usd)))

    def add(self, prefix: str, model: str | None, tokens: Mapping[str, int], now: float) -> None:
        entry = self._book.keys.get(prefix)
        if entry is None:
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
        for period in entry.periods:
            start = self._start(entry, period, now)
            have = self._used.get((prefix, period))
            before = have[1] if have is not None and have[0] == start else Usage()
            self._used[(prefix, period)] = (start, before + usage)

    def states(self, prefix: str, now: float) -> list[BudgetState]:
        entry = self._book.keys.get(prefix)
        if entry is None:
            return []
        out = []
        for budget in entry.budgets:
            start, end = self._period(entry.tz, budget.period, now)
            have = self._used.get((prefix, budget.period))
            used = have[1] if have is not None and have[0] == start else Usage()
            out.append(BudgetState(budget, used.amount(budget.unit), start, end))
        return out

    def check(self, prefix: str, routing: Mapping[str, Any], now: float) -> ProcessingResponse | None:
        """None: within every hard limit. Else the 429 that names the budget that resets last."""
        if prefix not in self._book.keys:
            return None
        refused = refusal(self.states(prefix, now))
        return None if refused is None else refusal_reply(refused, routing, now)

    def _start(self, entry: KeyBudgets, period: Period, now: float) -> float:
        return self._period(entry.tz, period, now)[0]

    def _period(self, tz: ZoneInfo, period: Period, now: float) -> tuple[float, float]:
        cached = self._bounds.get((tz.key, period))
        if cached is None or not cached[0] <= now < cached[1]:
            cached = self._bounds[(tz.key, period)] = period_bounds(period, now, tz)
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
