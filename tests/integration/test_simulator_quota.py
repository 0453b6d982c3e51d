"""Quota behaviour: an account driven to its limit reports the same figures everywhere, then serves again once
the simulated clock passes `resets_at`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import httpx
import pytest

from tests.support.simulator import RunningSimulator, bearer, parse_sse, turn_body

pytestmark = pytest.mark.integration
PRIMARY_BUDGET = 200
SECONDARY_BUDGET = 5000


def turn(sim: RunningSimulator, token: str) -> httpx.Response:
    return httpx.post(f"{sim.codex_base_url}/responses", json=turn_body(), headers=bearer(token), timeout=10)


def usage_api(sim: RunningSimulator, token: str) -> dict[str, Any]:
    return dict(httpx.get(f"{sim.base_url}/backend-api/wham/usage", headers=bearer(token), timeout=10).json())


async def ws_probe(sim: RunningSimulator, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rate-limit event a websocket opens with, and the answer to one response.create."""
    headers = {**bearer(token), "OpenAI-Beta": "responses_websockets=2026-02-06"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{sim.codex_base_url}/responses", headers=headers) as ws,
    ):
        first = json.loads((await ws.receive(timeout=5)).data)
        await ws.send_str(json.dumps({"type": "response.create", **turn_body()}))
        answer = json.loads((await ws.receive(timeout=5)).data)
    return first, answer


def test_account_runs_out_then_resets_on_time(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.upsert_account("acct-q", plan="plus", primary_budget=PRIMARY_BUDGET, secondary_budget=SECONDARY_BUDGET)
    token = sim.client.access_token("acct-q")
    spent = 0
    served = 0
    while True:
        resp = turn(sim, token)
        if resp.status_code == 429:
            break
        assert resp.status_code == 200
        # Headers report the usage before this turn, in whole percent of the budget.
        assert int(resp.headers["x-codex-primary-used-percent"]) == spent * 100 // PRIMARY_BUDGET
        assert int(resp.headers["x-codex-secondary-used-percent"]) == spent * 100 // SECONDARY_BUDGET
        spent += parse_sse(resp.text)[-1]["response"]["usage"]["total_tokens"]
        served += 1
        assert served < 100, "the account never ran out"
    assert served >= 2 and spent >= PRIMARY_BUDGET

    error = resp.json()["error"]
    headers = resp.headers
    assert error["type"] == "usage_limit_reached" and error["plan_type"] == "plus"
    assert error["resets_at"] == int(headers["x-codex-primary-reset-at"])
    assert abs(error["resets_in_seconds"] - int(headers["x-codex-primary-reset-after-seconds"])) <= 1
    assert 0 < error["resets_in_seconds"] <= 300 * 60
    assert headers["x-codex-primary-used-percent"] == "100"
    assert headers["x-codex-primary-window-minutes"] == "300"
    assert int(headers["x-codex-secondary-used-percent"]) == spent * 100 // SECONDARY_BUDGET

    usage = usage_api(sim, token)
    limits = usage["rate_limit"]
    assert limits["limit_reached"] is True and limits["allowed"] is False and usage["plan_type"] == "plus"
    assert limits["primary_window"]["used_percent"] == 100
    assert limits["primary_window"]["reset_at"] == error["resets_at"]
    assert limits["primary_window"]["limit_window_seconds"] == 300 * 60
    assert limits["secondary_window"]["used_percent"] == int(headers["x-codex-secondary-used-percent"])
    assert limits["secondary_window"]["limit_window_seconds"] == 10080 * 60

    event, answer = asyncio.run(ws_probe(sim, token))
    assert event["type"] == "codex.rate_limits" and event["rate_limits"]["limit_reached"] is True
    assert event["rate_limits"]["primary"]["used_percent"] == 100
    assert event["rate_limits"]["primary"]["reset_at"] == error["resets_at"]
    assert event["rate_limits"]["secondary"]["used_percent"] == limits["secondary_window"]["used_percent"]
    assert answer["type"] == "error" and answer["status"] == 429
    assert answer["error"]["type"] == "usage_limit_reached" and answer["error"]["resets_at"] == error["resets_at"]

    # Just before the reset it is still spent; once the clock passes resets_at it serves again.
    sim.client.advance_clock(error["resets_at"] - sim.client.now() - 5)
    assert turn(sim, token).status_code == 429
    sim.client.advance_clock(10)
    again = turn(sim, token)
    assert again.status_code == 200
    assert again.headers["x-codex-primary-used-percent"] == "0"
    # The weekly window did not reset: it still carries everything spent.
    assert int(again.headers["x-codex-secondary-used-percent"]) == spent * 100 // SECONDARY_BUDGET
    assert usage_api(sim, token)["rate_limit"]["limit_reached"] is False


def test_weekly_window_blocks_until_its_own_reset(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    account = sim.client.upsert_account("acct-w", secondary_used_percent=100)
    token = sim.client.access_token("acct-w")
    resp = turn(sim, token)
    assert resp.status_code == 429
    assert resp.json()["error"]["resets_at"] == account["secondary"]["reset_at"]
    # Crossing the 5-hour reset does not help; crossing the weekly one does.
    sim.client.advance_clock(301 * 60)
    assert turn(sim, token).status_code == 429
    sim.client.advance_clock(7 * 86400)
    assert turn(sim, token).status_code == 200


def test_free_plan_reports_only_a_weekly_window_in_the_primary_slot(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    token = sim.client.access_token("acct-free", plan="free")
    resp = turn(sim, token)
    assert resp.status_code == 200 and resp.headers["x-codex-plan-type"] == "free"
    assert resp.headers["x-codex-primary-window-minutes"] == "10080"
    assert "x-codex-secondary-used-percent" not in resp.headers
    assert usage_api(sim, token)["rate_limit"]["secondary_window"] is None
