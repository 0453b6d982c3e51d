"""Quota share: attribution of account usage to share groups, pacing, the pool's projected exhaustion."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench.selection_bench import make_candidates, policy_for
from extproc.share import ShareGate
from pooler.gateway.budgets import BudgetBook, KeyShare
from pooler.gateway.snapshot import PoolEntry
from pooler.selection import PoolIndex, StrategyState, WindowView
from pooler.share import (
    DAY_SECONDS,
    FIVE_HOURS,
    WEEKLY,
    AccountWindow,
    group_of,
    measure,
    next_pace_step,
    paced_percent,
    projected_exhaustion,
)

NOW = 1_800_000_000.0
WEEK = 7 * DAY_SECONDS


def test_usage_is_charged_by_tokens_and_weighted_by_plan() -> None:
    windows = [
        AccountWindow(1, 1.0, WEEKLY, 60.0, NOW + 1000),  # plus
        AccountWindow(2, 1.0, WEEKLY, 20.0, NOW + 2000),
        AccountWindow(3, 2.0, WEEKLY, 50.0, NOW + 3000),  # counts twice
    ]
    tokens = {
        (1, WEEKLY): {"key:a": 300, "key:b": 100},  # a: 45% of account 1, b: 15%
        (2, WEEKLY): {"key:b": 50},  # b: 20%
        # account 3: no gateway traffic in its window, charged to nobody
    }
    uses = measure(windows, tokens)
    capacity = 100 + 100 + 200
    assert uses[("key:a", WEEKLY)].used_percent == pytest.approx(100 * 45 / capacity)
    assert uses[("key:b", WEEKLY)].used_percent == pytest.approx(100 * (15 + 20) / capacity)
    assert uses[("key:a", WEEKLY)].resets_at == NOW + 1000
    assert uses[("key:b", WEEKLY)].resets_at == NOW + 1000  # the earliest account it used
    assert ("key:a", FIVE_HOURS) not in uses


def test_teams_share_one_measure() -> None:
    assert group_of("cpk_a", "ml") == group_of("cpk_b", "ml") == "team:ml"
    assert group_of("cpk_a", None) == "key:cpk_a"


def test_pacing_spreads_the_weekly_share_over_the_days() -> None:
    week_end = NOW + 5.5 * DAY_SECONDS  # 1.5 days into the week: day 2 has begun
    assert paced_percent(35.0, week_end, NOW) == pytest.approx(10.0)
    assert next_pace_step(week_end, NOW) == pytest.approx(week_end - 5 * DAY_SECONDS)
    assert paced_percent(35.0, week_end, week_end - 1) == pytest.approx(35.0)  # the last day: all of it
    assert paced_percent(35.0, NOW + WEEK, NOW) == pytest.approx(5.0)  # the first day


def test_projected_exhaustion_extrapolates_the_rate_of_the_current_windows() -> None:
    # Both weekly windows started 2 days ago and are at 40%: 100% in 3 more days, before their reset.
    windows = [AccountWindow(i, 1.0, WEEKLY, 40.0, NOW + 5 * DAY_SECONDS) for i in (1, 2)]
    assert projected_exhaustion(windows, WEEKLY, NOW) == pytest.approx(NOW + 3 * DAY_SECONDS)
    slow = [AccountWindow(1, 1.0, WEEKLY, 10.0, NOW + 5 * DAY_SECONDS)]
    assert projected_exhaustion(slow, WEEKLY, NOW) is None  # resets first
    assert projected_exhaustion([], WEEKLY, NOW) is None
    spent = [AccountWindow(1, 1.0, FIVE_HOURS, 100.0, NOW + 60)]
    assert projected_exhaustion(spent, FIVE_HOURS, NOW) == NOW


def _pool(windows: tuple[tuple[int, float, float], ...]) -> PoolEntry:
    base = make_candidates(1, spent_fraction=0.0)[0]
    candidate = dataclasses.replace(
        base, plan_type="plus", windows=tuple(WindowView(m, u, r, NOW) for m, u, r in windows)
    )
    policy = policy_for("least-used")
    return PoolEntry(1, "p", policy, 3, (candidate,), (candidate,), PoolIndex(policy, (candidate,)), StrategyState())


def test_gate_refuses_over_the_share_and_forgets_a_past_window() -> None:
    reset = NOW + 2 * DAY_SECONDS
    pool = _pool(((WEEKLY, 50.0, reset),))
    account = pool.candidates[0].account_id
    groups = {"cpk_a": (1, "key:cpk_a"), "cpk_b": (1, "key:cpk_b")}
    shares = {"cpk_a": KeyShare(1, 30.0, "key:cpk_a", False)}
    gate = ShareGate()
    start = reset - WEEK
    gate.seed(BudgetBook(shares=shares, groups=groups, share_tokens={(account, WEEKLY): (start, {"key:cpk_a": 80})}))
    gate.add("cpk_b", account, 20, NOW)  # a: 80% of the account's 50% = 40% of a one-account pool
    reply = gate.check("cpk_a", pool, {"key_id": 1}, NOW)
    assert reply is not None and reply.immediate_response.status.code == 429
    error = json.loads(reply.immediate_response.body)["error"]
    assert error["code"] == "share_exceeded" and error["share"]["used_percent"] == 40.0
    assert error["resets_at"] == int(reset) and "weekly capacity" in error["message"]
    assert gate.check("cpk_b", pool, {}, NOW) is None  # no share: never refused

    # The account's window reset: the new week starts from nothing.
    later = reset + 10
    fresh = _pool(((WEEKLY, 5.0, later + WEEK),))
    assert gate.check("cpk_a", fresh, {}, later) is None
    assert gate.windows("cpk_a", fresh, later) == [
        {
            "window": "5h",
            "used_percent": 0.0,
            "allowed_percent": 30.0,
            "share_percent": 30.0,
            "paced": False,
            "exceeded": False,
            "resets_at": None,
        },
        {
            "window": "weekly",
            "used_percent": 0.0,
            "allowed_percent": 30.0,
            "share_percent": 30.0,
            "paced": False,
            "exceeded": False,
            "resets_at": None,
        },
    ]


def _one_key_gate(pool: PoolEntry, reset: float, paced: bool) -> ShareGate:
    """A gate with one key holding a 30% share, whose group ran 10 tokens on the pool's account this week."""
    account = pool.candidates[0].account_id
    gate = ShareGate()
    gate.seed(
        BudgetBook(
            shares={"cpk_a": KeyShare(1, 30.0, "key:cpk_a", paced)},
            groups={"cpk_a": (1, "key:cpk_a")},
            share_tokens={(account, WEEKLY): (reset - WEEK, {"key:cpk_a": 10})},
        )
    )
    return gate


def test_a_paced_key_waits_for_the_next_day() -> None:
    reset = NOW + 6.5 * DAY_SECONDS  # half a day into the week: 30/7 % allowed today
    pool = _pool(((WEEKLY, 10.0, reset),))
    gate = _one_key_gate(pool, reset, paced=True)
    windows = gate.windows("cpk_a", pool, NOW)
    assert windows is not None
    weekly = windows[1]
    assert weekly["paced"] and weekly["allowed_percent"] == pytest.approx(30 / 7, abs=1e-3)
    assert weekly["exceeded"] and weekly["resets_at"] == int(reset - 6 * DAY_SECONDS)


def test_the_measure_is_kept_for_its_second_whatever_evidence_arrives() -> None:
    # Evidence replaces a pool's candidates on nearly every answer: within one second the pool's measure is the one
    # already made (not recomputed per request); the next second sees the new evidence.
    reset = NOW + 2 * DAY_SECONDS
    pool = _pool(((WEEKLY, 50.0, reset),))
    gate = _one_key_gate(pool, reset, paced=False)
    first, _ = gate.uses(pool, NOW)
    assert first[("key:cpk_a", WEEKLY)].used_percent == pytest.approx(50.0)
    newer = _pool(((WEEKLY, 80.0, reset),))
    same, _ = gate.uses(newer, NOW + 0.9)
    assert same is first
    later, _ = gate.uses(newer, NOW + 1.0)
    assert later[("key:cpk_a", WEEKLY)].used_percent == pytest.approx(80.0)
