"""`/metrics` through Envoy after driven traffic: counters by pool, status class, failovers, tokens; gauges from
the snapshot; the bearer token (always required on the gateway port, required on the ext_proc's own socket once
set); and no account id, ChatGPT id, email, Pool key or token in the text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from pooler.audit import SYSTEM
from pooler.envoy_config import metrics_socket_for
from pooler.metrics_token import clear_token, create_token
from pooler.models import PoolAssignment, UpstreamAccount
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-metrics")) as gateway:
        yield gateway


@pytest.fixture
def token(gw: Gateway) -> str:
    """A fresh metrics token (replacing any earlier one), once the ext_proc's cached setting knows it."""
    with gw.ctx.session_factory.begin() as session:
        raw = create_token(session, gw.ctx.hasher, actor=SYSTEM)
    wait_until(lambda: _scrape(gw, raw).status_code == 200, timeout=20, what="metrics token in force")
    return raw


def _scrape(gw: Gateway, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{gw.url}/metrics", headers=headers, timeout=10)


def _scrape_socket(gw: Gateway, headers: dict[str, str] | None = None) -> httpx.Response:
    """The ext_proc's own unix socket, as a Prometheus on the same host would scrape it (no Envoy)."""
    transport = httpx.HTTPTransport(uds=metrics_socket_for(Path(gw.env["POOLER_EXTPROC_SOCKET"]).resolve()))
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get("http://extproc/metrics", headers=headers or {})


def _refused(response: httpx.Response) -> bool:
    return response.status_code == 401 and response.json()["error"]["code"] == "metrics_token_required"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def test_counters_after_traffic_and_no_identifiers(gw: Gateway, token: str) -> None:
    seeded = gw.seed_pool("metrics-pool", ["acct-m1", "acct-m2"], strategy="primary-first")

    def prefer_m1(session: Any) -> None:
        for a in session.scalars(select(PoolAssignment).where(PoolAssignment.pool_id == seeded.pool_id)):
            a.priority = 1 if a.account_id == seeded.accounts["acct-m1"] else 2
        account = session.get(UpstreamAccount, seeded.accounts["acct-m1"])
        account.email = "metrics.canary@private-mail.test"

    gw.update(prefer_m1)
    for i in range(3):
        r = httpx.post(
            f"{gw.codex_base}/responses",
            json=turn_body(f"metrics {i}"),
            headers={"Authorization": f"Bearer {seeded.key}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
    gw.simulator.client.upsert_account("acct-m1", primary_used_percent=100)  # next request: 429 -> failover
    r = httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body("metrics failover"),
        headers={"Authorization": f"Bearer {seeded.key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    bad = httpx.post(
        f"{gw.codex_base}/responses", json=turn_body(), headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert bad.status_code == 401
    gw.wait_for_logs(4, pool_id=seeded.pool_id)

    def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        response = _scrape(gw, token)
        assert response.status_code == 200, response.text
        samples = _samples(response.text)
        # Wait on the responses family itself: the seed's readiness probe adds a 2xx `usage` request to the pool.
        done = _value(samples, "pooler_requests_total", pool="metrics-pool", route_family="responses")
        # The quota gauge reads the snapshot, which takes the 429's evidence on its own (asynchronous) path.
        quota = _value(samples, "pooler_quota_used_percent", account="acct-m1", window="5h")
        # The refused request has no pool, so wait_for_logs above does not cover it: its row arrives on its own.
        refused = _value(samples, "pooler_requests_total", pool="none", status_class="4xx")
        return samples if done >= 4 and quota == 100 and refused >= 1 else None

    samples = wait_until(scraped, timeout=15, what="request counters")
    assert _value(samples, "pooler_requests_total", pool="metrics-pool", route_family="responses") == 4
    assert _value(samples, "pooler_requests_total", pool="none", status_class="4xx") >= 1
    assert _value(samples, "pooler_failovers_total", pool="metrics-pool") == 1
    assert _value(samples, "pooler_upstream_attempts_total", pool="metrics-pool", outcome="failed_over") == 1
    assert _value(samples, "pooler_upstream_attempts_total", pool="metrics-pool", outcome="served") == 4
    assert _value(samples, "pooler_selection_total", pool="metrics-pool") >= 5
    tokens = _value(samples, "pooler_tokens_total", pool="metrics-pool", key_prefix=seeded.key_prefix)
    assert tokens > 0
    assert _value(samples, "pooler_tokens_total", pool="metrics-pool", kind="output") > 0
    assert _value(samples, "pooler_accounts", state="active") >= 2
    assert _value(samples, "pooler_quota_used_percent", account="acct-m1", window="5h") == 100
    assert _value(samples, "pooler_extproc_phase_seconds_count", phase="select") >= 5
    assert _value(samples, "pooler_extproc_phase_seconds_count", phase="accesslog_batch") >= 1

    text = _scrape(gw, token).text
    with gw.ctx.session_factory() as session:
        ids = [str(a.id) for a in session.scalars(select(UpstreamAccount))]
    for secret in [seeded.key, *seeded.tokens.values(), "metrics.canary@private-mail.test", token]:
        assert secret not in text
    # Account ids never label anything: the only account label is `account=` with labels, never numbers.
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert "account_id" not in s.labels
            if "account" in s.labels:
                assert s.labels["account"] not in ids


def test_gateway_port_needs_the_token(gw: Gateway, token: str) -> None:
    # Configured: the gateway port and the ext_proc's own socket both refuse a scrape without it.
    assert _refused(_scrape(gw))
    assert _refused(_scrape(gw, "pmt_wrong"))
    assert _refused(_scrape_socket(gw))
    response = _scrape(gw, token)
    assert response.status_code == 200 and "pooler_requests_total" in response.text
    assert token not in response.text
    assert _scrape_socket(gw, {"Authorization": f"Bearer {token}"}).status_code == 200
    with gw.ctx.session_factory.begin() as session:
        clear_token(session, actor=SYSTEM)
    # No token at all: the socket (the operator's own host) is open again, the gateway port stays closed to
    # everyone, so a holder of a Pool key never reads every pool's names, key prefixes and account labels.
    wait_until(lambda: _scrape_socket(gw).status_code == 200, timeout=20, what="metrics socket open again")
    assert _refused(_scrape(gw))
    assert _refused(_scrape(gw, "pmt_anything"))
    # Envoy's route header on a direct scrape only makes it stricter, never opener.
    assert _refused(_scrape_socket(gw, {"x-pooler-route": "metrics"}))
