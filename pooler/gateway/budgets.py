"""What the ext_proc needs to enforce key budgets, read from the database: each budgeted key's budgets and its
pool's time zone, the pricing table, and what each key used in its current periods (from the request logs: one
row per request, so retries and failovers of a request count once).

Read with the snapshot and again every `RECONCILE_SECONDS` (extproc/reloader.py): between reads, the ext_proc
counts what its own access log reports. With several replicas each counts its own traffic and takes the larger
of its count and the database's at every read, so a key can overshoot a hard limit by what the other replicas
served since the last read (at most `RECONCILE_SECONDS` plus one writer flush).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from pooler.budgets import (
    Budget,
    BudgetState,
    Period,
    Usage,
    parse_stored,
    period_bounds,
    request_tokens,
    states,
    zone,
)
from pooler.models import PoolKey, PoolSettings, RequestLog
from pooler.pricing import PRICING_SETTING, Prices, estimate, usable
from pooler.settings import get_json_setting

RECONCILE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class KeyBudgets:
    key_id: int
    prefix: str
    tz: ZoneInfo
    budgets: tuple[Budget, ...]

    @property
    def periods(self) -> frozenset[Period]:
        return frozenset(b.period for b in self.budgets)


@dataclass(slots=True)
class BudgetBook:
    """Budgeted keys by prefix, the prices, and the usage read from the database at `loaded_at`."""

    keys: dict[str, KeyBudgets] = field(default_factory=dict)
    prices: Prices = field(default_factory=dict)
    used: dict[tuple[str, Period], tuple[float, Usage]] = field(default_factory=dict)
    """(prefix, period) -> (the period's start, usage since then)."""
    zones: dict[int, str] = field(default_factory=dict)
    """pool id -> its time zone's name (where its budget periods start)."""

    def key_states(self, now: float) -> dict[str, list[BudgetState]]:
        """Each budgeted key's budgets with the usage read (the admin and the alert rules; the ext_proc counts
        on from here itself)."""
        out = {}
        for prefix, entry in self.keys.items():
            used = {period: usage for (p, period), (_, usage) in self.used.items() if p == prefix}
            out[prefix] = states(entry.budgets, used, now, entry.tz)
        return out


def load_budget_book(session: Session, now: dt.datetime) -> BudgetBook:
    zones = {s.pool_id: s.time_zone for s in session.scalars(select(PoolSettings))}
    keys: dict[str, KeyBudgets] = {}
    for key in session.scalars(select(PoolKey).options(selectinload(PoolKey.budgets))):
        parsed = (parse_stored(r.period, r.unit, r.hard_limit, r.soft_limit) for r in key.budgets)
        budgets = [b for b in parsed if b is not None]
        if budgets:
            keys[key.prefix] = KeyBudgets(key.id, key.prefix, zone(zones.get(key.pool_id)), tuple(budgets))
    prices = usable(get_json_setting(session, PRICING_SETTING))
    return BudgetBook(keys, prices, read_usage(session, keys, prices, now.timestamp()), zones)


def read_usage(
    session: Session, keys: Mapping[str, KeyBudgets], prices: Prices, now: float
) -> dict[tuple[str, Period], tuple[float, Usage]]:
    """Each budgeted key's usage in each of its current periods: one grouped query per key and period."""
    used: dict[tuple[str, Period], tuple[float, Usage]] = {}
    for prefix, entry in keys.items():
        for period in entry.periods:
            start, _ = period_bounds(period, now, entry.tz)
            rows = session.execute(
                select(
                    RequestLog.model,
                    func.sum(RequestLog.input_tokens),
                    func.sum(RequestLog.cached_tokens),
                    func.sum(RequestLog.output_tokens),
                )
                .where(
                    RequestLog.key_prefix == prefix,
                    RequestLog.created_at >= dt.datetime.fromtimestamp(start, dt.UTC),
                )
                .group_by(RequestLog.model)
            )
            total = Usage()
            for model, input_tokens, cached, output in rows:
                total = total + request_usage(prices, model, int(input_tokens or 0), int(cached or 0), int(output or 0))
            used[(prefix, period)] = (start, total)
    return used


def request_usage(prices: Prices, model: str | None, input_tokens: int, cached: int, output: int) -> Usage:
    """What one request (or a sum of requests of one model) counts against budgets."""
    return Usage(request_tokens(input_tokens, output), estimate(prices, model, input_tokens, cached, output))
