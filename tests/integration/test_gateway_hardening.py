"""Hardening of the gateway's evidence path through the real data plane (Envoy + ext_proc + PostgreSQL +
simulator): what an attempt's access-log entry may and may not conclude about its account."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import func, insert, select

from extproc.state import GatewayState
from pooler.gateway.evidence import RequestRecord
from pooler.gateway.writes import Batch, write_batch
from pooler.models import PoolAssignment, QuotaWindow, RequestLog, UpstreamAccount
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-hardening")) as gateway:
        yield gateway


def _codex(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gw.codex_base}/responses", json=turn_body("hi"), headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_v1_body_rejected_after_the_pick_does_not_demote_the_account(gw: Gateway) -> None:
    """The /v1 translator answers 400 in the request-body phase, after the account was picked: the attempt's
    upstream-log entry has status 0 and no upstream-failure flag. That says nothing about the account."""
    seeded = gw.seed_pool("h-badbody", ["acct-hb1"])
    account_id = seeded.accounts["acct-hb1"]
    bad = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "gpt-5.1-codex", "messages": []},
        headers={"Authorization": f"Bearer {seeded.key}"},
        timeout=30,
    )
    assert bad.status_code == 400, bad.text
    # The evidence of that attempt has been applied once its request row is written (same access-log flush).
    gw.wait_for_logs(1, pool_id=seeded.pool_id, status_code=400)
    # One account only: had it been demoted, this would be a 503 no_eligible_account for demotion_seconds.
    ok = _codex(gw, seeded.key)
    assert ok.status_code == 200, ok.text
    with gw.ctx.session_factory() as session:
        row = session.get(UpstreamAccount, account_id)
        assert row is not None and row.demoted_until is None


def _prefer(gw: Gateway, seeded: SeededPool, first: str) -> None:
    """primary-first with `first` first by priority; returns once the gateway routes to it."""

    def change(session: Any) -> None:
        for row in session.scalars(select(PoolAssignment).where(PoolAssignment.pool_id == seeded.pool_id)):
            row.priority = 1 if row.account_id == seeded.accounts[first] else 2

    gw.update(change)
    wait_until(lambda: _codex(gw, seeded.key).status_code == 200 and _last_served(gw) == first, timeout=15)


def _last_served(gw: Gateway) -> str | None:
    entries = gw.simulator.client.journal(route="responses")
    return entries[-1]["account"] if entries else None


def _last_seq(gw: Gateway) -> int:
    return max((e["seq"] for e in gw.simulator.client.journal()), default=0)


def test_429_limit_survives_an_extproc_restart(gw: Gateway) -> None:
    """A 429 whose headers show no spent window (a `retry-after` only) limits the account: that limit is
    persisted as quota evidence (source limit_error), so a restarted ext_proc - or another replica - skips
    the account too, instead of learning the 429 again."""
    seeded = gw.seed_pool("h-limit", ["acct-hl1", "acct-hl2"], strategy="primary-first")
    _prefer(gw, seeded, "acct-hl1")
    # A body that names no limit (the simulator's default 429 body is usage_limit_reached with its own reset).
    gw.simulator.client.add_fault(
        "status",
        status=429,
        account="acct-hl1",
        count=1,
        headers={"retry-after": "600"},
        body={"error": {"message": "Too many requests"}},
    )
    since = _last_seq(gw)
    assert _codex(gw, seeded.key).status_code == 200
    assert [e["account"] for e in gw.simulator.client.journal(since=since, route="responses")] == [
        "acct-hl1",
        "acct-hl2",
    ]
    gw.wait_for_logs(1, pool_id=seeded.pool_id, attempt_count=2)  # the evidence went out in that flush

    gw.kill_extproc()
    gw.start_extproc()
    since = _last_seq(gw)
    for _ in range(3):
        assert _codex(gw, seeded.key).status_code == 200
    assert {e["account"] for e in gw.simulator.client.journal(since=since, route="responses")} == {"acct-hl2"}
    with gw.ctx.session_factory() as session:
        window = session.scalar(
            select(QuotaWindow).where(
                QuotaWindow.account_id == seeded.accounts["acct-hl1"], QuotaWindow.source == "limit_error"
            )
        )
        assert window is not None and window.used_percent >= 100 and window.resets_at is not None
        assert 500 <= window.resets_at.replace(tzinfo=dt.UTC).timestamp() - time.time() <= 600


def test_in_flight_slot_moves_with_the_attempt() -> None:
    """A retried request releases its earlier attempt's account at the next pick (that attempt is over), not
    when the access log arrives; the last attempt's slot is released by the access-log entry."""
    state = GatewayState(cast(Any, None))
    state.start("r1", 1, 0.0)
    state.start("r2", 1, 0.0)
    state.start("r1", 2, 0.0)  # r1 failed over from 1 to 2
    assert state.in_flight == {1: 1, 2: 1}
    assert state.requests_in_flight["r1"][1] == [1, 2]  # positions kept for the per-attempt log entries
    state.finish("r1")
    state.finish("r2")
    state.finish("r2")  # a duplicate entry changes nothing
    assert state.in_flight == {}


def test_pool_max_attempts_above_envoys_retry_budget_is_warned(gw: Gateway) -> None:
    """The rendered Envoy config allows num_retries + 1 attempts (the harness renders the default, 3). A pool
    asking for more cannot get them; the ext_proc names the pool in a warning once Envoy stops early."""
    accounts = ["acct-hm1", "acct-hm2", "acct-hm3", "acct-hm4"]
    seeded = gw.seed_pool("h-attempts", accounts, max_attempts=5)
    for account in accounts:
        gw.simulator.client.add_fault("status", status=503, account=account, count=1)
    since = _last_seq(gw)
    response = _codex(gw, seeded.key)
    gw.simulator.client.clear_faults()
    assert response.status_code == 503
    assert len(gw.simulator.client.journal(since=since, route="responses")) == 3  # Envoy's budget, not the pool's
    warning = f"pool {seeded.pool_id} (h-attempts) has max_attempts 5"
    wait_until(lambda: warning in gw.extproc.log_text(), timeout=10, what="the max_attempts warning")
    assert "3 attempts" in gw.extproc.log_text()


def test_a_batch_kept_through_a_long_outage_still_flushes(postgres_url: str) -> None:
    """After an outage the writer holds up to 200k request rows. The idempotency check (which ids exist?) must
    not put them all in one IN list: PostgreSQL takes at most 65,535 bind parameters per statement, and a
    batch that can never be written is retried for ever."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from tests.support.databases import psycopg_url

    count = 70_000
    engine = create_engine(psycopg_url(postgres_url))
    created = dt.datetime.now(dt.UTC)
    try:
        with Session(engine) as session, session.begin():
            # Already written once (the flush that failed had committed after all): every row must be skipped.
            session.execute(
                insert(RequestLog),
                [
                    {
                        "created_at": created,
                        "request_id": f"outage-{n}",
                        "route_family": "responses",
                        "method": "POST",
                        "status_code": 200,
                    }
                    for n in range(count)
                ],
            )
            records = [
                RequestRecord(
                    f"outage-{n}", created, None, None, None, "responses", "POST", None, 200, None, None, None, []
                )
                for n in range(count)
            ]
            write_batch(session, Batch(requests=records))
            session.flush()
            written = session.scalar(select(func.count()).where(RequestLog.request_id.like("outage-%")))
            assert written == count
            session.rollback()  # leave the shared database as it was
    finally:
        engine.dispose()
