"""Key budgets and the self-service usage endpoint through the real data plane (Envoy, ext_proc, simulator)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from pooler.audit import SYSTEM
from pooler.budgets import Budget, Period, Unit
from pooler.models import Pool
from pooler.services import keys as key_service
from pooler.services.keys import KeyShareSpec
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-budgets"), shifted_clock=True) as gateway:
        yield gateway


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _post(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(f"{gw.codex_base}/responses", json=turn_body("hi"), headers=_auth(key), timeout=30)


def _usage(gw: Gateway, key: str | None) -> httpx.Response:
    return httpx.get(f"{gw.url}/pooler/usage", headers=_auth(key) if key else {}, timeout=10)


def _budget(gw: Gateway, key: str, period: str, unit: str) -> dict[str, Any]:
    budgets = _usage(gw, key).json()["budgets"]
    return next(b for b in budgets if b["period"] == period and b["unit"] == unit)


def _last_seq(gw: Gateway) -> int:
    return max([e["seq"] for e in gw.simulator.client.journal()] or [0])


# Runs before the daily budget test: that one moves the simulator clock a day ahead (it cannot go back), which
# this one must not inherit.
def test_a_key_with_a_30_percent_weekly_share_is_refused_while_another_key_goes_on(gw: Gateway) -> None:
    accounts = ["acct-q1", "acct-q2", "acct-q3"]
    seeded = gw.seed_pool("share", accounts, strategy="round-robin", key_fields={"share": KeyShareSpec(percent=30)})
    with gw.ctx.session_factory.begin() as session:
        other = key_service.create_key(
            session, gw.ctx.hasher, pool=session.get(Pool, seeded.pool_id), label="other", actor=SYSTEM
        ).raw
    assert _post(gw, seeded.key).status_code == 200
    first = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    per_request = first.total_tokens or 0
    assert per_request > 0
    # Each request uses 1% of an account's week: the pool has room for ~300, the share for ~90. The gateway
    # re-measures a pool's share at most once a second, so a burst may overshoot by a second's worth of requests;
    # the room left in the pool keeps that overshoot from reaching the accounts' own limit.
    for account in accounts:
        gw.simulator.client.upsert_account(account, secondary_budget=100 * per_request)

    served, refused = 1, None
    for _ in range(250):
        answer = _post(gw, seeded.key)
        if answer.status_code == 429:
            refused = answer
            break
        assert answer.status_code == 200, answer.text
        served += 1
    assert refused is not None, "the share never refused"
    error = refused.json()["error"]
    assert error["code"] == "share_exceeded" and error["type"] == "usage_limit_reached"
    assert "weekly capacity" in error["message"] and error["share"]["window"] == "weekly"
    assert error["share"]["used_percent"] >= 30 and int(refused.headers["retry-after"]) > 0
    assert served >= 89  # about 30% of 3 accounts x 100 requests (the reported percent lags one request)

    for _ in range(3):
        assert _post(gw, other).status_code == 200
    mine = _usage(gw, seeded.key).json()["share"]["windows"]
    weekly = next(w for w in mine if w["window"] == "weekly")
    assert weekly["exceeded"] is True and weekly["allowed_percent"] == 30
    assert _usage(gw, other).json()["share"] is None


def test_daily_token_budget_refuses_then_resets_and_counts_a_failover_once(gw: Gateway) -> None:
    budget = Budget(Period.DAY, Unit.TOKENS, hard=1, soft=None)
    seeded = gw.seed_pool(
        "budget-day",
        ["acct-bd1", "acct-bd2"],
        strategy="primary-first",
        time_zone="Asia/Tokyo",
        key_fields={"budgets": [budget]},
    )
    gw.prefer(seeded, "acct-bd1")
    gw.simulator.client.upsert_account("acct-bd1", primary_used_percent=100)

    served = _post(gw, seeded.key)
    assert served.status_code == 200, served.text
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    assert row.attempt_count == 2  # failed over from the spent account
    tokens = (row.input_tokens or 0) + (row.output_tokens or 0)
    assert tokens > 0
    used = wait_until(
        lambda: _budget(gw, seeded.key, "day", "tokens")["used"] or None, timeout=10, what="the budget counted"
    )
    assert used == tokens  # one request row, not one count per attempt

    since = _last_seq(gw)
    refused = _post(gw, seeded.key)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and error["type"] == "usage_limit_reached"
    assert "daily token budget" in error["message"]
    tokyo = ZoneInfo("Asia/Tokyo")
    midnight = dt.datetime.combine(
        dt.datetime.now(tokyo).date() + dt.timedelta(days=1), dt.time(), tzinfo=tokyo
    ).timestamp()
    assert error["resets_at"] == int(midnight)
    assert error["budget"]["period"] == "day" and error["budget"]["hard_limit"] == 1
    retry_after = int(refused.headers["retry-after"])
    assert abs(retry_after - (midnight - time.time())) <= 5
    assert [e for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"] == []
    logged = gw.wait_for_logs(2, pool_id=seeded.pool_id, route_family="responses")
    assert logged[-1].status_code == 429 and logged[-1].error_code == "budget_exceeded"

    # The self-service endpoint answers while the key is over its budget.
    over = _usage(gw, seeded.key)
    assert over.status_code == 200 and over.json()["budgets"][0]["exceeded"] is True

    # Past Tokyo's midnight the budget starts again.
    shift = midnight - time.time() + 5
    try:
        gw.shift_clock(shift)
        gw.simulator.client.advance_clock(shift)
        wait_until(lambda: _budget(gw, seeded.key, "day", "tokens")["used"] == 0, timeout=10, what="the new period")
        again = _post(gw, seeded.key)
        assert again.status_code == 200, again.text
    finally:
        gw.shift_clock(0)


def test_monthly_money_budget_refuses_with_the_period_named(gw: Gateway) -> None:
    budget = Budget(Period.MONTH, Unit.USD, hard=0.000001, soft=None)
    seeded = gw.seed_pool("budget-usd", ["acct-bu1"], key_fields={"budgets": [budget]})
    assert _post(gw, seeded.key).status_code == 200
    wait_until(lambda: _budget(gw, seeded.key, "month", "usd")["exceeded"], timeout=10, what="spend counted")
    refused = _post(gw, seeded.key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and "monthly spend budget" in error["message"]
    assert error["budget"]["unit"] == "usd" and error["budget"]["used"] > 0


def test_self_service_usage_shows_only_the_callers_figures(gw: Gateway) -> None:
    mine = gw.seed_pool(
        "self-a", ["acct-sa1"], key_fields={"budgets": [Budget(Period.WEEK, Unit.TOKENS, 10**9, 10**8)]}
    )
    other = gw.seed_pool("self-b", ["acct-sb1"], key_fields={"budgets": [Budget(Period.DAY, Unit.USD, 100, None)]})
    assert _post(gw, other.key).status_code == 200

    missing = _usage(gw, None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    wrong = _usage(gw, mine.key[:-2] + "xx")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"

    answer = _usage(gw, mine.key)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    data = answer.json()
    assert data["key"]["prefix"] == mine.key_prefix
    assert [(b["period"], b["unit"], b["hard_limit"], b["soft_limit"]) for b in data["budgets"]] == [
        ("week", "tokens", 10**9, 10**8)
    ]
    text = answer.text
    for foreign in (other.key_prefix, "acct-sa1", "acct-sb1", mine.key):
        assert foreign not in text

    page = httpx.get(f"{gw.url}/pooler/usage.html", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert 'type="password"' in page.text and "localStorage" not in page.text
