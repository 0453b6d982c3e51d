"""Through Envoy: an account whose refresh fails permanently goes to reauth_required and the gateway stops
routing to it (the refresh commit bumps the routing version, the ext_proc reloads its snapshot).

The account is made due by its token expiry (within the refresh horizon, still valid), not by
`request_refresh`: a refresh flag would make the gateway skip the account by itself, and the test would then
pass even if the gateway ignored `reauth_required`. It waits for the ext_proc to have loaded the routing
version of the transition (`/readyz` reports it) before sending traffic, so it is deterministic, and it first
shows the account served (round-robin over both) so "not routed" means something.

Shown to fail (local experiment, a copy of the tree with `reauth_required` added to
`pooler.selection.reasons.ROUTABLE_STATES`): the gateway routed to acct-g1 again and the client got the
simulator's 401 `token_invalidated` for its revoked token."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pooler.audit import SYSTEM
from pooler.migrate import upgrade
from pooler.models import UpstreamAccount
from pooler.services.refresh import RefreshDeps, refresh_due_tokens
from pooler.settings import set_setting
from pooler.versions import routing_version
from tests.support.databases import throwaway_postgres_database
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture
def gw_db() -> Iterator[str]:
    with throwaway_postgres_database("pooler_sched_gw") as url:
        upgrade(url)
        yield url


def _loaded_version(gw: Gateway) -> int:
    return int(httpx.get(f"{gw.url}/readyz", timeout=5).json()["routing_version"])


def _wait_for_reload(gw: Gateway) -> None:
    """Until the ext_proc's snapshot is at least the database's current routing version."""
    with gw.ctx.session_factory() as session:
        target = routing_version(session)
    wait_until(lambda: _loaded_version(gw) >= target, timeout=15, what=f"ext_proc at routing version {target}")


def test_reauth_required_account_is_no_longer_routed(gw_db: str, tmp_path: Path) -> None:
    with running_gateway(gw_db, tmp_path) as gw, httpx.Client(timeout=30) as http:
        seeded = gw.seed_pool("sched-gw", ["acct-g1", "acct-g2"], strategy="round-robin")
        sim = gw.simulator
        headers = {"Authorization": f"Bearer {seeded.key}"}

        def served(count: int) -> list[str]:
            since = max((e["seq"] for e in sim.client.journal()), default=0)
            for _ in range(count):
                r = http.post(f"{gw.codex_base}/responses", json=turn_body(), headers=headers)
                assert r.status_code == 200, r.text
            return [e["account"] for e in sim.client.journal(since=since, route="responses")]

        assert set(served(4)) == {"acct-g1", "acct-g2"}  # both serve before

        bad = seeded.accounts["acct-g1"]
        now = dt.datetime.now(dt.UTC)
        with gw.ctx.session_factory.begin() as session:
            set_setting(session, "auth_base_url", sim.base_url, actor=SYSTEM)
            for row in session.query(UpstreamAccount).filter(UpstreamAccount.id.in_(seeded.accounts.values())):
                # g1 due (expires within the horizon, still valid); g2 comfortably not.
                row.access_token_expires_at = now + dt.timedelta(hours=1 if row.id == bad else 240)
                row.last_refresh_at = now
        sim.client.upsert_account("acct-g1", revoked=True)
        counts = refresh_due_tokens(RefreshDeps(gw.ctx.session_factory, gw.ctx.box, http), now)
        assert counts["reauth_required"] == 1, counts
        with gw.ctx.session_factory() as session:
            row = session.get(UpstreamAccount, bad)
            assert row is not None and row.state == "reauth_required"
            assert row.refresh_requested_at is None  # the state alone must keep it out
            assert row.access_token_expires_at is not None and row.access_token_expires_at.replace(
                tzinfo=dt.UTC
            ) > dt.datetime.now(dt.UTC)

        _wait_for_reload(gw)
        routed = served(6)
        assert set(routed) == {"acct-g2"}, routed
