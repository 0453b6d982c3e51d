"""Through Envoy: an account whose refresh fails permanently goes to reauth_required and the gateway stops
routing to it (the refresh commit bumps the routing version, the ext_proc reloads its snapshot)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pooler.migrate import upgrade
from pooler.models import UpstreamAccount
from pooler.services.actors import SYSTEM
from pooler.services.refresh import RefreshDeps, refresh_due_tokens, request_refresh
from pooler.settings import set_setting
from tests.support.databases import throwaway_postgres_database
from tests.support.gateway import running_gateway
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture
def gw_db() -> Iterator[str]:
    with throwaway_postgres_database("pooler_sched_gw") as url:
        upgrade(url)
        yield url


def test_reauth_required_account_is_no_longer_routed(gw_db: str, tmp_path: Path) -> None:
    with running_gateway(gw_db, tmp_path) as gw, httpx.Client(timeout=30) as http:
        seeded = gw.seed_pool("sched-gw", ["acct-g1", "acct-g2"], strategy="round-robin")
        sim = gw.simulator
        with gw.ctx.session_factory.begin() as session:
            set_setting(session, "auth_base_url", sim.base_url, actor=SYSTEM)
        bad = seeded.accounts["acct-g1"]
        sim.client.upsert_account("acct-g1", revoked=True)
        with gw.ctx.session_factory.begin() as session:
            request_refresh(session, bad)
        counts = refresh_due_tokens(RefreshDeps(gw.ctx.session_factory, gw.ctx.box, http), dt.datetime.now(dt.UTC))
        assert counts["reauth_required"] == 1
        with gw.ctx.session_factory() as session:
            row = session.get(UpstreamAccount, bad)
            assert row is not None and row.state == "reauth_required"
        since = max((e["seq"] for e in sim.client.journal()), default=0)
        headers = {"Authorization": f"Bearer {seeded.key}"}
        for _ in range(6):
            r = http.post(f"{gw.codex_base}/responses", json=turn_body(), headers=headers)
            assert r.status_code == 200, r.text
        served = [e["account"] for e in sim.client.journal(since=since, route="responses")]
        assert served and set(served) == {"acct-g2"}, served
