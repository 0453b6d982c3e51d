"""Key budgets: the pure policy (periods in a time zone, cost, refusals) and the ext_proc's counters."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from extproc.budgets import BudgetCounters
from pooler.budgets import (
    Budget,
    BudgetState,
    Period,
    Unit,
    Usage,
    describe,
    parse_stored,
    period_bounds,
    request_tokens,
    states,
    valid_zone,
    zone,
)
from pooler.errors import PoolerError
from pooler.gateway.budgets import BudgetBook, KeyBudgets, request_usage
from pooler.pricing import estimate, usable, vendored
from pooler.services.keys import parse_budget

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def _ts(*args: int, tz: ZoneInfo = UTC) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def test_day_week_month_are_calendar_periods_in_the_zone() -> None:
    now = _ts(2026, 12, 9, 23, 30, tz=BERLIN)  # a Wednesday
    assert period_bounds(Period.DAY, now, BERLIN) == (_ts(2026, 12, 9, tz=BERLIN), _ts(2026, 12, 10, tz=BERLIN))
    assert period_bounds(Period.WEEK, now, BERLIN) == (_ts(2026, 12, 7, tz=BERLIN), _ts(2026, 12, 14, tz=BERLIN))
    assert period_bounds(Period.MONTH, now, BERLIN) == (_ts(2026, 12, 1, tz=BERLIN), _ts(2027, 1, 1, tz=BERLIN))
    # The same moment is already the 10th in UTC+14.
    kiritimati = ZoneInfo("Pacific/Kiritimati")
    start, _ = period_bounds(Period.DAY, now, kiritimati)
    assert start == _ts(2026, 12, 10, tz=kiritimati)


def test_a_day_across_a_dst_change_is_23_hours() -> None:
    start, end = period_bounds(Period.DAY, _ts(2026, 3, 29, 12, tz=BERLIN), BERLIN)
    assert end - start == 23 * 3600


def test_unknown_zone_falls_back_to_utc() -> None:
    assert zone("Mars/Olympus") == UTC and zone(None) == UTC
    assert valid_zone("Asia/Tokyo") and not valid_zone("Mars/Olympus") and not valid_zone("../etc")


def test_tokens_count_input_and_output_once_and_cost_prices_cached_input() -> None:
    assert request_tokens(1000, 200) == 1200
    prices = {"m": {"input": 1.0, "cached_input": 0.1, "output": 10.0}}
    # 600 fresh input at 1.0, 400 cached at 0.1, 200 output at 10.0 (per 1M)
    assert estimate(prices, "m", 1000, 400, 200) == pytest.approx((600 + 40 + 2000) / 1_000_000)
    assert request_usage(prices, "m", 1000, 400, 200) == Usage(1200, pytest.approx(2640 / 1_000_000))
    assert usable({"m": "not prices"}) == vendored()


def test_states_say_which_limits_are_reached() -> None:
    now = _ts(2026, 12, 9, 12)
    budgets = [
        Budget(Period.DAY, Unit.TOKENS, 100, None),
        Budget(Period.MONTH, Unit.USD, 5, 4),
        Budget(Period.WEEK, Unit.TOKENS, None, 50),
    ]
    used = {Period.DAY: Usage(150, 1.0), Period.MONTH: Usage(150, 5.0), Period.WEEK: Usage(60, 0.0)}
    result = states(budgets, used, now, UTC)
    assert [s.exceeded for s in result] == [True, True, False]
    assert [s.soft_reached for s in result] == [False, True, True]
    assert describe(result[1]) == (
        "The monthly spend budget of this Pool API key is used up ($5.00 of $5.00); it resets at 2027-01-01T00:00:00Z."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("day:tokens:100000", Budget(Period.DAY, Unit.TOKENS, 100000, None)),
        ("Month:USD:50:40", Budget(Period.MONTH, Unit.USD, 50, 40)),
        ("week:usd::20", Budget(Period.WEEK, Unit.USD, None, 20)),
    ],
)
def test_budget_specs_parse(text: str, expected: Budget) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize(
    "text", ["day:tokens", "year:tokens:1", "day:eur:1", "day:tokens:-1", "day:tokens::", "day:tokens:nan"]
)
def test_bad_budget_specs_are_refused(text: str) -> None:
    with pytest.raises(PoolerError):
        parse_budget(text)


def test_stored_rows_that_no_longer_parse_limit_nothing() -> None:
    assert parse_stored("day", "tokens", 10, None) == Budget(Period.DAY, Unit.TOKENS, 10, None)
    assert parse_stored("fortnight", "tokens", 10, None) is None
    assert parse_stored("day", "tokens", None, None) is None


def _book(now: float, used: Usage) -> BudgetBook:
    entry = KeyBudgets(7, "cpk_a", UTC, (Budget(Period.DAY, Unit.TOKENS, 1000, None),))
    start, _ = period_bounds(Period.DAY, now, UTC)
    return BudgetBook(
        {"cpk_a": entry}, {"*": {"input": 1, "cached_input": 0, "output": 1}}, {("cpk_a", Period.DAY): (start, used)}
    )


def test_counters_take_the_larger_of_database_and_memory_and_roll_at_the_period_end() -> None:
    now = _ts(2026, 12, 9, 12)
    counters = BudgetCounters()
    counters.seed(_book(now, Usage(400, 0.0)))
    counters.add("cpk_a", "m", {"input_tokens": 500, "output_tokens": 200}, now)
    assert counters.states("cpk_a", now)[0].used == 1100
    assert counters.check("cpk_a", {}, now) is not None
    counters.seed(_book(now, Usage(900, 0.0)))  # the database lags behind this process: memory wins
    assert counters.states("cpk_a", now)[0].used == 1100
    counters.seed(_book(now, Usage(5000, 0.0)))  # other replicas' requests: the database wins
    assert counters.states("cpk_a", now)[0].used == 5000
    tomorrow = now + 86400
    assert counters.states("cpk_a", tomorrow)[0].used == 0
    assert counters.check("cpk_a", {}, tomorrow) is None
    assert counters.check("cpk_other", {}, now) is None  # no budgets: one dict lookup


def test_the_refusal_names_the_exceeded_budget_that_resets_last() -> None:
    now = _ts(2026, 12, 9, 12)
    entry = KeyBudgets(
        7,
        "cpk_a",
        UTC,
        (Budget(Period.DAY, Unit.TOKENS, 10, None), Budget(Period.MONTH, Unit.TOKENS, 10, None)),
    )
    used = {("cpk_a", p): (period_bounds(p, now, UTC)[0], Usage(50, 0.0)) for p in (Period.DAY, Period.MONTH)}
    counters = BudgetCounters()
    counters.seed(BudgetBook({"cpk_a": entry}, {}, used))
    reply = counters.check("cpk_a", {}, now)
    assert reply is not None
    assert json.loads(reply.immediate_response.body)["error"]["budget"]["period"] == "month"


def test_refusal_reply_is_a_codex_429_with_retry_after() -> None:
    now = _ts(2026, 12, 9, 12)
    counters = BudgetCounters()
    counters.seed(_book(now, Usage(1000, 0.0)))
    reply = counters.check("cpk_a", {"key_id": 7}, now)
    assert reply is not None
    immediate = reply.immediate_response
    assert immediate.status.code == 429
    headers = {h.header.key: h.header.raw_value.decode() for h in immediate.headers.set_headers}
    assert headers["retry-after"] == str(12 * 3600)
    error = json.loads(immediate.body)["error"]
    assert error["type"] == "usage_limit_reached" and error["code"] == "budget_exceeded"
    assert error["resets_at"] == int(_ts(2026, 12, 10)) and error["resets_in_seconds"] == 12 * 3600
    assert reply.dynamic_metadata.fields["pooler"].struct_value.fields["error"].string_value == "budget_exceeded"


def test_budget_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        Budget(Period.DAY, Unit.TOKENS, None, None)
    with pytest.raises(ValueError):
        Budget(Period.DAY, Unit.TOKENS, 0, None)
    assert BudgetState(Budget(Period.DAY, Unit.TOKENS, 5, None), 5, 0, 1).exceeded


def test_alert_rule_warns_at_the_soft_limit_and_degrades_at_the_hard_one() -> None:
    from pooler.alerts.rules import AlertSnapshot, KeyBudgetUse, Severity, Thresholds, key_budget_reached

    resets = dt.datetime(2026, 12, 10, tzinfo=dt.UTC)
    snap = AlertSnapshot(
        now=dt.datetime(2026, 12, 9, 12, tzinfo=dt.UTC),
        budgets=[
            KeyBudgetUse("cpk_soft", "Team A", "month", "usd", 41.0, 40.0, 50.0, resets),
            KeyBudgetUse("cpk_hard", "Team A", "day", "tokens", 1000, None, 1000, resets),
        ],
    )
    signals = {s.subject: s for s in key_budget_reached(snap, Thresholds())}
    soft, hard = signals["key:cpk_soft:month:usd"], signals["key:cpk_hard:day:tokens"]
    assert soft.severity is Severity.WATCH and "$41.00" in soft.impact and soft.details["limit"] == 40.0
    assert hard.severity is Severity.DEGRADED and "budget_exceeded" in hard.impact
