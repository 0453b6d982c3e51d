"""What the gateway learns from each upstream answer, through the real Envoy, ext_proc and simulator: the
upstream's view (simulator journal: attempts per account) and the account's state in the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from sqlalchemy import select

from pooler.audit import SYSTEM
from pooler.models import AccountModelExclusion, JobRun, PoolAssignment, QuotaWindow, UpstreamAccount
from pooler.settings import set_setting
from pooler.states import AccountState
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until
from tests.support.scheduler_process import start_scheduler
from tests.support.simulator import parse_sse, turn_body, ws_turn_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-evidence")) as gateway:
        with gateway.ctx.session_factory.begin() as session:
            set_setting(session, "auth_base_url", gateway.simulator.base_url, actor=SYSTEM)  # refreshes
        yield gateway


def _post(gw: Gateway, key: str, **fields: Any) -> httpx.Response:
    return httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body("hi", **fields),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _last_seq(gw: Gateway) -> int:
    return max([e["seq"] for e in gw.simulator.client.journal()] or [0])


def _attempts(gw: Gateway, since: int) -> list[tuple[str, int]]:
    return [(e["account"], e["status"]) for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"]


def _first_then(gw: Gateway, name: str, first: str, second: str) -> SeededPool:
    """A primary-first pool that always tries `first` before `second`."""
    seeded = gw.seed_pool(name, [first, second], strategy="primary-first")

    def order(session: Any) -> None:
        for a in session.scalars(select(PoolAssignment).where(PoolAssignment.pool_id == seeded.pool_id)):
            a.priority = 1 if a.account_id == seeded.accounts[first] else 2

    gw.update(order)
    return seeded


def _account(gw: Gateway, account_id: int) -> UpstreamAccount:
    with gw.ctx.session_factory() as session:
        row = session.get(UpstreamAccount, account_id)
        assert row is not None
        return row


def test_deactivated_account_fails_over_and_leaves_rotation(gw: Gateway) -> None:
    seeded = _first_then(gw, "dead", "acct-dead", "acct-alive")
    gw.simulator.client.upsert_account("acct-dead", deactivated=True)
    since = _last_seq(gw)
    response = _post(gw, seeded.key)
    assert response.status_code == 200, response.text
    assert _attempts(gw, since) == [("acct-dead", 403), ("acct-alive", 200)]

    dead = seeded.accounts["acct-dead"]
    wait_until(
        lambda: _account(gw, dead).state == AccountState.DEACTIVATED, timeout=10, what="account state deactivated"
    )
    assert _account(gw, dead).state_reason == "account_deactivated"
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    assert [(a.account_id, a.status_code, a.outcome) for a in row.attempts] == [
        (dead, 403, "failed_over"),
        (seeded.accounts["acct-alive"], 200, "served"),
    ]
    # Out of rotation: later requests never reach it.
    since = _last_seq(gw)
    for _ in range(3):
        assert _post(gw, seeded.key).status_code == 200
    assert {a for a, _ in _attempts(gw, since)} == {"acct-alive"}


def test_credential_errors_never_reach_the_client(gw: Gateway) -> None:
    seeded = gw.seed_pool("expired", ["acct-evx1", "acct-evx2"])
    body = {"error": {"message": "Provided authentication token is expired.", "code": "token_expired"}}
    gw.simulator.client.add_fault("status", status=401, body=body, count=2, route="responses")
    since = _last_seq(gw)
    response = _post(gw, seeded.key)
    assert sorted(_attempts(gw, since)) == [("acct-evx1", 401), ("acct-evx2", 401)]
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "no_eligible_account"
    assert "token" not in response.text
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    # The third attempt found no untried account: the gateway's own answer, with the upstream's statuses kept.
    assert row.error_code == "no_eligible_account"
    assert [a.status_code for a in row.attempts][:2] == [401, 401]
    with gw.ctx.session_factory() as session:
        flagged = session.scalars(
            select(UpstreamAccount.refresh_requested_at).where(UpstreamAccount.id.in_(seeded.accounts.values()))
        ).all()
    assert all(flagged), "both accounts are flagged for a refresh"


def test_upstream_500_fails_over_and_demotes(gw: Gateway) -> None:
    seeded = _first_then(gw, "five", "acct-f1", "acct-f2")
    gw.simulator.client.add_fault("status", status=500, account="acct-f1", count=1)
    since = _last_seq(gw)
    before = time.time()
    response = _post(gw, seeded.key)
    assert response.status_code == 200, response.text
    assert _attempts(gw, since) == [("acct-f1", 500), ("acct-f2", 200)]
    demoted = wait_until(
        lambda: _account(gw, seeded.accounts["acct-f1"]).demoted_until, timeout=10, what="demotion written"
    )
    assert demoted.timestamp() >= before + 25  # demotion_seconds (30) from the failure


def test_rate_limit_exceeded_cools_down_from_retry_after_without_a_quota_window(gw: Gateway) -> None:
    seeded = _first_then(gw, "burst", "acct-r1", "acct-r2")
    body = {"error": {"type": "rate_limit_exceeded", "message": "Rate limit reached"}}
    gw.simulator.client.add_fault("status", status=429, account="acct-r1", body=body, headers={"retry-after": "7"})
    since = _last_seq(gw)
    before = time.time()
    assert _post(gw, seeded.key).status_code == 200
    assert _attempts(gw, since) == [("acct-r1", 429), ("acct-r2", 200)]
    r1 = seeded.accounts["acct-r1"]
    demoted = wait_until(lambda: _account(gw, r1).demoted_until, timeout=10, what="cooldown written")
    assert before + 5 <= demoted.timestamp() <= time.time() + 8
    with gw.ctx.session_factory() as session:
        spent = session.scalars(
            select(QuotaWindow).where(QuotaWindow.account_id == r1, QuotaWindow.used_percent >= 100)
        ).all()
    assert spent == []  # a burst limit is not a spent window


def test_usage_not_included_excludes_the_account_for_that_model_only(gw: Gateway) -> None:
    seeded = _first_then(gw, "plan", "acct-n1", "acct-n2")
    gw.simulator.client.upsert_account("acct-n1", excluded_models=["gpt-5.1-codex-max"])
    since = _last_seq(gw)
    assert _post(gw, seeded.key, model="gpt-5.1-codex-max").status_code == 200
    assert _attempts(gw, since) == [("acct-n1", 429), ("acct-n2", 200)]
    n1 = seeded.accounts["acct-n1"]

    def excluded() -> list[tuple[str, str]]:
        with gw.ctx.session_factory() as session:
            rows = session.scalars(select(AccountModelExclusion).where(AccountModelExclusion.account_id == n1))
            return [(r.model, r.reason) for r in rows]

    assert wait_until(excluded, timeout=10, what="model exclusion") == [("gpt-5.1-codex-max", "usage_not_included")]
    assert _account(gw, n1).state == AccountState.ACTIVE and _account(gw, n1).demoted_until is None
    since = _last_seq(gw)
    assert _post(gw, seeded.key, model="gpt-5.1-codex-max").status_code == 200
    assert _post(gw, seeded.key, model="gpt-5.1-codex").status_code == 200
    # The excluded model goes straight to the other account; any other model still routes to the first.
    assert _attempts(gw, since) == [("acct-n2", 200), ("acct-n1", 200)]


def test_a_turn_failing_at_its_first_event_fails_over_unseen(gw: Gateway) -> None:
    seeded = _first_then(gw, "firstfail", "acct-ff1", "acct-ff2")
    gw.simulator.client.add_fault("fail_event", account="acct-ff1", after_tokens=0, code="server_is_overloaded")
    since = _last_seq(gw)
    before = time.time()
    response = _post(gw, seeded.key)
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    # The client's stream is the second account's, whole: nothing of the failed attempt reached it.
    assert [e["type"] for e in events].count("response.created") == 1
    assert events[-1]["type"] == "response.completed"
    assert not any(e["type"] in ("response.failed", "error") for e in events)
    assert _attempts(gw, since) == [("acct-ff1", 200), ("acct-ff2", 200)]  # the upstream's own statuses
    ff1 = seeded.accounts["acct-ff1"]
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    assert row.status_code == 200 and row.error_code is None
    assert [(a.account_id, a.status_code, a.error_code, a.outcome) for a in row.attempts] == [
        (ff1, 503, "server_is_overloaded", "failed_over"),
        (seeded.accounts["acct-ff2"], 200, None, "served"),
    ]
    demoted = wait_until(lambda: _account(gw, ff1).demoted_until, timeout=10, what="demotion after the event")
    assert demoted.timestamp() >= before + 25  # a server failure's demotion (demotion_seconds, 30)


def test_held_answers_reach_the_client_whole(gw: Gateway) -> None:
    seeded = gw.seed_pool("held-whole", ["acct-hw1"])
    # A stream in many chunks (deltas 20 ms apart): the ext_proc decides on the first chunks and leaves the stream;
    # Envoy must pass every later byte, and any chunk it had sent the ext_proc meanwhile, unchanged and in order.
    gw.simulator.client.add_fault("slow", token_rate=50, count=1)
    gw.simulator.client.script({"text": " ".join(f"word{n}" for n in range(40))})
    response = _post(gw, seeded.key)
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 40
    # Not an event stream (a non-streaming turn): passed at once, whole.
    whole = _post(gw, seeded.key, stream=False)
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-type"].startswith("application/json")
    assert whole.json()["status"] == "completed"


def test_a_turn_failing_after_its_first_delta_reaches_the_client_and_is_evidence(gw: Gateway) -> None:
    seeded = _first_then(gw, "latefail", "acct-lf1", "acct-lf2")
    gw.simulator.client.add_fault("fail_event", account="acct-lf1", after_tokens=1, code="server_is_overloaded")
    since = _last_seq(gw)
    response = _post(gw, seeded.key)
    # Bytes of the turn were out: no failover; the client gets the failure event as the upstream sent it.
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert any(e["type"] == "response.output_text.delta" for e in events)
    assert events[-1]["type"] == "response.failed"
    assert _attempts(gw, since) == [("acct-lf1", 200)]
    lf1 = seeded.accounts["acct-lf1"]
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    assert row.error_code == "server_is_overloaded"
    assert row.account_id == lf1
    wait_until(lambda: _account(gw, lf1).demoted_until, timeout=10, what="demotion after the event")


def test_a_lone_account_failing_at_its_first_event_gets_a_retryable_gateway_answer(gw: Gateway) -> None:
    seeded = gw.seed_pool("firstfail-lone", ["acct-fl1"])
    gw.simulator.client.add_fault("fail_event", after_tokens=0, code="server_is_overloaded")
    response = _post(gw, seeded.key)
    # No other account: the gateway's retryable answer, never half a stream.
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "no_eligible_account"
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")[-1]
    assert [(a.status_code, a.error_code) for a in row.attempts][:1] == [(503, "server_is_overloaded")]
    wait_until(
        lambda: _account(gw, seeded.accounts["acct-fl1"]).demoted_until, timeout=10, what="demotion after the event"
    )


def test_a_websocket_error_frame_teaches_what_the_same_status_would(gw: Gateway) -> None:
    seeded = gw.seed_pool("ws-error", ["acct-wse1"])
    account_id = seeded.accounts["acct-wse1"]
    headers = {"Authorization": f"Bearer {seeded.key}", "session-id": "ws-error-1"}

    async def run() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(gw.ws_url, headers=headers) as ws:
            await ws.send_json({"type": "response.create", **turn_body("first")})
            assert (await ws_turn_events(ws))[-1]["type"] == "response.completed"
            # Spent between two turns of one connection: the upstream answers the next with an error frame.
            gw.simulator.client.upsert_account("acct-wse1", primary_used_percent=100)
            await ws.send_json({"type": "response.create", **turn_body("second")})
            return await ws_turn_events(ws)

    events = asyncio.run(run())
    assert events[-1]["type"] == "error" and events[-1]["status"] == 429  # the client sees it unchanged

    def spent() -> list[QuotaWindow]:
        with gw.ctx.session_factory() as session:
            return list(
                session.scalars(
                    select(QuotaWindow).where(QuotaWindow.account_id == account_id, QuotaWindow.used_percent >= 100)
                )
            )

    # Only the frame said so: the upgrade's headers showed the window before it was spent, and nothing polls.
    (window,) = wait_until(spent, timeout=15, what="the spent window from the error frame")
    assert window.resets_at is not None and window.resets_at.timestamp() > time.time()
    row = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses_ws")[-1]
    assert row.input_tokens is not None and row.input_tokens > 0  # the completed turn still counts


def test_a_401_is_refreshed_within_seconds(gw: Gateway, tmp_path: Path) -> None:
    seeded = gw.seed_pool("refresh-now", ["acct-evt1"])
    account_id = seeded.accounts["acct-evt1"]
    epoch = _account(gw, account_id).credential_epoch
    # The periodic refresh_due_tokens job is slowed to an hour: only the fast refresh_requested job can be quick.
    env = {k: gw.env[k] for k in ("POOLER_SECRET_KEYS", "POOLER_KEY_PEPPER", "POOLER_LOG_LEVEL")}
    scheduler = start_scheduler(
        "scheduler-evidence", gw.db_url, tmp_path, {**env, "POOLER_SCHEDULER_INTERVALS": "refresh_due_tokens=3600"}
    )
    try:
        gw.simulator.client.add_fault("status", status=401, account="acct-evt1", count=1)
        response = _post(gw, seeded.key)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"

        def refreshed() -> bool:
            row = _account(gw, account_id)
            return row.refresh_requested_at is None and row.credential_epoch > epoch

        # Only the fast job can have done it (the periodic one is slowed to an hour): its run says so below.
        wait_until(refreshed, timeout=60, what="the account refreshed")
        with gw.ctx.session_factory() as session:
            runs = session.scalars(select(JobRun).where(JobRun.job_id == "refresh_requested")).all()
        assert any((run.counts or {}).get("refreshed") for run in runs), "refreshed by the fast job"
        wait_until(lambda: _post(gw, seeded.key).status_code == 200, timeout=15, what="the account serves again")
    finally:
        scheduler.stop()
