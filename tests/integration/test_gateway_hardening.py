"""Hardening of the gateway's evidence path through the real data plane (Envoy + ext_proc + PostgreSQL +
simulator): what an attempt's access-log entry may and may not conclude about its account."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pooler.models import UpstreamAccount
from tests.support.gateway import Gateway, running_gateway
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
