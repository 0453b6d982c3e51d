"""Faults through the real data plane: ext_proc killed, PostgreSQL stopped mid-run; then a canary scan."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine

from pooler.migrate import upgrade
from tests.support.databases import psycopg_url
from tests.support.dbscan import dump_all_tables
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.postgres_cluster import PostgresCluster, postgres_cluster
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration
PROMPT_CANARY = "canary-prompt-7f3a9c1e"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as pg:
        upgrade(pg.url)
        yield pg


@pytest.fixture(scope="module")
def gw(cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(cluster.url, tmp_path_factory.mktemp("gateway-faults")) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def seeded(gw: Gateway) -> SeededPool:
    return gw.seed_pool("faults", ["acct-x1", "acct-x2"])


def _post(gw: Gateway, key: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body(PROMPT_CANARY),
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def test_extproc_killed_gives_fast_json_5xx_then_recovers(gw: Gateway, seeded: SeededPool) -> None:
    assert _post(gw, seeded.key).status_code == 200
    gw.kill_extproc()
    started = time.monotonic()
    response = _post(gw, seeded.key, timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code >= 500 and elapsed < 3.0, (response.status_code, elapsed)
    assert response.json()["error"]["code"] == "gateway_unavailable"
    # The responses route's ext_proc fails open (for the first-event hold); its decision guard refuses the
    # undecided attempt, and a client's own copy of the guard's mark does not get it through.
    journal = gw.simulator.client.journal()
    last = int(journal[-1]["seq"]) if journal else 0
    forged = httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body(PROMPT_CANARY),
        headers={"Authorization": f"Bearer {seeded.key}", "x-pooler-decided": "1", "Accept": "text/event-stream"},
        timeout=10,
    )
    assert forged.status_code == 503 and forged.json()["error"]["code"] == "gateway_unavailable", forged.text
    assert gw.simulator.client.journal(since=last) == [], "an undecided attempt reached the upstream"
    gw.start_extproc()
    assert _post(gw, seeded.key).status_code == 200


def test_postgres_stopped_requests_flow_and_logs_flush_after(
    gw: Gateway, seeded: SeededPool, cluster: PostgresCluster
) -> None:
    _post(gw, seeded.key)
    before = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")
    baseline = len(before)
    cluster.stop()
    try:
        statuses = [_post(gw, seeded.key).status_code for _ in range(5)]
        assert statuses == [200] * 5
    finally:
        cluster.start()
    rows = gw.wait_for_logs(baseline + 5, timeout=30, pool_id=seeded.pool_id, route_family="responses")
    assert len({r.request_id for r in rows}) == len(rows)  # flushed once each, none lost, none doubled
    assert _post(gw, seeded.key).status_code == 200


def test_canary_scan_of_rows_logs_and_access_logs(gw: Gateway, seeded: SeededPool, cluster: PostgresCluster) -> None:
    assert _post(gw, seeded.key).status_code == 200
    gw.wait_for_logs(1, pool_id=seeded.pool_id)
    canaries = {"prompt": PROMPT_CANARY, "pool key": seeded.key, **{f"token {a}": t for a, t in seeded.tokens.items()}}
    engine = create_engine(psycopg_url(cluster.url))
    try:
        blob = dump_all_tables(engine)
    finally:
        engine.dispose()
    logs = gw.process_logs()
    for what, value in canaries.items():
        assert value.encode() not in blob, f"{what} stored in the database"
        for name in ("envoy", "extproc", "access_log"):
            assert value not in logs[name], f"{what} in the {name} log"
    wait_until(lambda: gw.count_logs() > 0, timeout=5)
