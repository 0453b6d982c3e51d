"""Per-key budgets: pure policy over plain data (no I/O), shared by the ext_proc (hard refusals), the scheduler's
alert rules (soft thresholds), the self-service usage endpoint and the admin.

A budget limits one Pool key over a calendar period (day, week from Monday, month) in the pool's time zone, in
tokens or in money (USD from the pricing table, pooler.pricing). The hard limit refuses requests once the usage
reached it (the request that crosses it is served: its size is known only when it ends); the soft limit only
raises an alert. Tokens are counted as the upstream reports them: input (its cached part included) plus output
(reasoning included) - the same token classes the pricing table prices, each counted once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "UTC"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Unit(StrEnum):
    TOKENS = "tokens"
    USD = "usd"


PERIOD_NAMES: Mapping[Period, str] = {Period.DAY: "daily", Period.WEEK: "weekly", Period.MONTH: "monthly"}


@dataclass(frozen=True, slots=True)
class Budget:
    period: Period
    unit: Unit
    hard: float | None
    """Requests are refused once the period's usage reached it (None: no hard limit)."""
    soft: float | None
    """An alert is raised once the period's usage reached it (None: no alert)."""

    def __post_init__(self) -> None:
        for limit in (self.hard, self.soft):
            if limit is not None and not (limit > 0 and math.isfinite(limit)):
                raise ValueError("a budget limit must be a positive number")
        if self.hard is None and self.soft is None:
            raise ValueError("a budget needs a hard or a soft limit")


@dataclass(frozen=True, slots=True)
class Usage:
    tokens: int = 0
    usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens + other.tokens, self.usd + other.usd)

    def amount(self, unit: Unit) -> float:
        return float(self.tokens) if unit is Unit.TOKENS else self.usd


@dataclass(frozen=True, slots=True)
class BudgetState:
    budget: Budget
    used: float
    starts_at: float
    resets_at: float

    @property
    def exceeded(self) -> bool:
        return self.budget.hard is not None and self.used >= self.budget.hard

    @property
    def soft_reached(self) -> bool:
        return self.budget.soft is not None and self.used >= self.budget.soft


def zone(name: str | None) -> ZoneInfo:
    """The pool's time zone; an unknown name (set before a tz database change) falls back to UTC."""
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def period_bounds(period: Period, now: float, tz: ZoneInfo) -> tuple[float, float]:
    """Start and end (epoch seconds) of the calendar period holding `now`, in `tz`. Midnights are local wall
    clock, so a day across a DST change is 23 or 25 hours long."""
    today = dt.datetime.fromtimestamp(now, tz).date()
    if period is Period.DAY:
        start, end = today, today + dt.timedelta(days=1)
    elif period is Period.WEEK:
        start = today - dt.timedelta(days=today.weekday())
        end = start + dt.timedelta(days=7)
    else:
        start = today.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    return _midnight(start, tz), _midnight(end, tz)


def _midnight(day: dt.date, tz: ZoneInfo) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def request_tokens(input_tokens: int, output_tokens: int) -> int:
    """Tokens a request counts against a token budget (cached input is part of `input_tokens`)."""
    return max(0, input_tokens) + max(0, output_tokens)


def states(budgets: Iterable[Budget], used: Mapping[Period, Usage], now: float, tz: ZoneInfo) -> list[BudgetState]:
    """Each budget with its period's usage (`used` holds the usage of the current period of each)."""
    out = []
    for budget in budgets:
        start, end = period_bounds(budget.period, now, tz)
        out.append(BudgetState(budget, used.get(budget.period, Usage()).amount(budget.unit), start, end))
    return out


def describe(state: BudgetState) -> str:
    """The refusal's message: which budget, how much of it, and when it resets (UTC)."""
    budget = state.budget
    reset = dt.datetime.fromtimestamp(state.resets_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"The {PERIOD_NAMES[budget.period]} {_unit_text(budget.unit)} budget of this Pool API key is used up "
        f"({_amount(state.used, budget.unit)} of {_amount(budget.hard or 0, budget.unit)}); it resets at {reset}."
    )


def _unit_text(unit: Unit) -> str:
    return "token" if unit is Unit.TOKENS else "spend"


def _amount(value: float, unit: Unit) -> str:
    return f"{int(value)} tokens" if unit is Unit.TOKENS else f"${value:.2f}"


def state_payload(state: BudgetState, now: float) -> dict[str, object]:
    """One budget as the self-service endpoint and the 429 body show it."""
    budget = state.budget
    return {
        "period": budget.period.value,
        "unit": budget.unit.value,
        "used": round(state.used, 6) if budget.unit is Unit.USD else int(state.used),
        "hard_limit": budget.hard,
        "soft_limit": budget.soft,
        "exceeded": state.exceeded,
        "period_start": int(state.starts_at),
        "resets_at": int(state.resets_at),
        "resets_in_seconds": max(0, math.ceil(state.resets_at - now)),
    }


def parse_stored(period: str, unit: str, hard: float | None, soft: float | None) -> Budget | None:
    """A stored budget row as a policy value; None for a row edited by hand into something invalid (it then
    limits nothing, rather than failing every snapshot load)."""
    try:
        return Budget(Period(period), Unit(unit), hard, soft)
    except ValueError:
        return None
