"""An upstream 401 through the real data plane, with the real scheduler: the client is served by another
account, the gateway flags the account for refresh (`refresh_requested_at`, batched) and skips it, the
scheduler (`python -m scheduler`, short intervals) refreshes it, and it serves again. Own database: the
scheduler works on every account it can see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from pooler.audit import SYSTEM
from pooler.migrate import upgrade
from pooler.models import PoolAssignment, UpstreamAccount
from pooler.settings import set_setting
from tests.support.databases import throwaway_postgres_database
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until
from tests.support.scheduler_process import start_scheduler
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with throwaway_postgres_database("pooler_gw_refresh") as url:
        upgrade(url)
        with running_gateway(url, tmp_path_factory.mktemp("gateway-refresh")) as gateway:
            with gateway.ctx.session_factory.begin() as session:
                set_setting(session, "auth_base_url", gateway.simulator.base_url, actor=SYSTEM)
            yield gateway


def _account(gw: Gateway, account_id: int) -> UpstreamAccount:
    with gw.ctx.session_factory() as session:
        row = session.get(UpstreamAccount, account_id)
        assert row is not None
        session.expunge(row)
        return row


def _pool_preferring_first(gw: Gateway, name: str, accounts: list[str]) -> SeededPool:
    """primary-first with `accounts[0]` first by priority, loaded by the gateway (it serves)."""
    seeded = gw.seed_pool(name, accounts, strategy="primary-first")
    first = seeded.accounts[accounts[0]]

    def prefer(session: Any) -> None:
        for row in session.scalars(select(PoolAssignment).where(PoolAssignment.pool_id == seeded.pool_id)):
            row.priority = 1 if row.account_id == first else 2

    gw.update(prefer)
    wait_until(
        lambda: _post(gw, seeded).status_code == 200 and _last_served(gw) == accounts[0],
        timeout=15,
        what=f"{accounts[0]} preferred",
    )
    return seeded


def _post(gw: Gateway, seeded: SeededPool) -> httpx.Response:
    headers = {"Authorization": f"Bearer {seeded.key}"}
    return httpx.post(f"{gw.codex_base}/responses", json=turn_body(), headers=headers, timeout=30)


def _last_served(gw: Gateway) -> str | None:
    entries = gw.simulator.client.journal(route="responses")
    return entries[-1]["account"] if entries else None


def _last_seq(gw: Gateway) -> int:
    return max((e["seq"] for e in gw.simulator.client.journal()), default=0)


def test_upstream_401_fails_over_within_the_request(gw: Gateway) -> None:
    seeded = _pool_preferring_first(gw, "h-401-retry", ["acct-rc", "acct-rd"])
    gw.simulator.client.add_fault("status", status=401, account="acct-rc", count=1)
    since = _last_seq(gw)
    response = _post(gw, seeded)
    tried = [(e["account"], e["status"]) for e in gw.simulator.client.journal(since=since, route="responses")]
    gw.simulator.client.clear_faults()
    assert response.status_code == 200, response.text
    assert tried == [("acct-rc", 401), ("acct-rd", 200)]


def test_upstream_401_flags_refresh_skips_then_serves_after_the_scheduler_refreshed(
    gw: Gateway, tmp_path: Path
) -> None:
    sim = gw.simulator
    seeded = _pool_preferring_first(gw, "h-401", ["acct-ra", "acct-rb"])
    a, b = seeded.accounts["acct-ra"], seeded.accounts["acct-rb"]
    epoch = _account(gw, a).credential_epoch

    def post() -> httpx.Response:
        return _post(gw, seeded)

    def last_served() -> str | None:
        return _last_served(gw)

    sim.client.add_fault("status", status=401, account="acct-ra", count=1)
    since = _last_seq(gw)
    response = post()
    # Envoy retries the 401 on B within the request; the evidence about A is what matters here.
    assert response.status_code == 200, response.text
    tried = [(e["account"], e["status"]) for e in sim.client.journal(since=since, route="responses")]
    assert tried[0] == ("acct-ra", 401)

    flagged = wait_until(lambda: _account(gw, a).refresh_requested_at is not None, timeout=10, what="refresh flag")
    assert flagged
    assert _account(gw, b).refresh_requested_at is None
    # Skipped in memory at once: later requests go straight to B while the flag stands (no scheduler yet).
    since = _last_seq(gw)
    for _ in range(3):
        assert post().status_code == 200
    assert {e["account"] for e in sim.client.journal(since=since, route="responses")} == {"acct-rb"}

    scheduler = start_scheduler(
        "scheduler",
        gw.db_url,
        tmp_path,
        {k: gw.env[k] for k in ("POOLER_SECRET_KEYS", "POOLER_KEY_PEPPER", "POOLER_LOG_LEVEL")},
    )
    try:

        def refreshed() -> bool:
            row = _account(gw, a)
            return row.refresh_requested_at is None and row.credential_epoch > epoch

        wait_until(refreshed, timeout=30, what="the scheduler refreshed A")
        # The refresh bumped the routing version: once reloaded, A (first by priority) serves again, with its
        # new token.
        wait_until(lambda: post().status_code == 200 and last_served() == "acct-ra", timeout=15, what="A serves")
        entry = sim.client.journal(route="responses")[-1]
        assert entry["status"] == 200 and entry["authorization"] != f"Bearer {seeded.tokens['acct-ra']}"
    finally:
        scheduler.stop()
