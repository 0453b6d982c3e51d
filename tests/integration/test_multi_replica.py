"""Two ext_proc replicas (replica mode, POOLER_EXTPROC_SHARED) behind one Envoy, sharing PostgreSQL: a session
stays on one account across replicas, a key's requests/min holds across replicas, and a replica restarted
under traffic loses no request and no request-log row."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pooler import gateway_contract as gc
from pooler.models import RequestLog
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("multi-replica"), extproc_replicas=2) as gateway:
        yield gateway


def _post(gw: Gateway, key: str, session: str | None = None, prompt: str = "hi") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if session:
        headers["session-id"] = session
    return httpx.post(f"{gw.codex_base}/responses", json=turn_body(prompt), headers=headers, timeout=30)


def _picks(gw: Gateway, replica: int, pool: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(gw.metrics_text(replica)):
        for s in family.samples:
            if s.name == "pooler_selection_total" and s.labels.get("pool") == pool:
                total += s.value
    return total


def test_session_stays_on_one_account_across_replicas(gw: Gateway) -> None:
    # No stream cap: these turns follow each other every ~25 ms and a stream counts as in flight until its
    # access-log entry arrives (up to one flush, 0.2 s here, later), so the cap (8, per worker its share) would
    # see the session's own finished turns as concurrent and overflow one; that is the cap's test, not this one.
    seeded = gw.seed_pool(
        "mr-sticky", ["acct-r1", "acct-r2", "acct-r3"], strategy="round-robin", max_concurrency_per_account=None
    )
    since = max([e["seq"] for e in gw.simulator.client.journal()] or [0])
    # At least 20 turns, and on until both replicas have picked for this session: Envoy balances ext_proc streams
    # over the replicas, but a loaded machine can send a short run of turns to one of them only.
    turns = 0
    while turns < 20 or not (_picks(gw, 0, "mr-sticky") > 0 and _picks(gw, 1, "mr-sticky") > 0):
        assert turns < 80, "Envoy never sent this session's attempts to both replicas"
        response = _post(gw, seeded.key, session="mr-session-1", prompt=f"turn {turns}")
        assert response.status_code == 200, response.text
        turns += 1
    served = [e["account"] for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"]
    # Both replicas picked for this session, and agreed on one account.
    assert len(served) == turns and len(set(served)) == 1, served
    # Without a session the round-robin strategy spreads: stickiness, not a single account, kept it together.
    for _ in range(6):
        assert _post(gw, seeded.key).status_code == 200
    spread = [e["account"] for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"][turns:]
    assert len(set(spread)) > 1, spread


def test_requests_per_minute_holds_across_replicas(gw: Gateway) -> None:
    # 6/min: seed_pool's readiness probe (one authenticated usage request) counts, as on a single replica.
    seeded = gw.seed_pool("mr-limit", ["acct-r4"], key_fields={"requests_per_minute": 6})
    statuses = [_post(gw, seeded.key).status_code for _ in range(12)]
    assert statuses.count(200) == 5, statuses
    assert statuses.count(429) == 7, statuses
    refused = _post(gw, seeded.key)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert _picks(gw, 0, "mr-limit") + _picks(gw, 1, "mr-limit") == 5


def test_replica_restart_loses_no_request_and_no_row(gw: Gateway) -> None:
    seeded = gw.seed_pool("mr-restart", ["acct-r5", "acct-r6"])
    results: list[int] = []
    stop = threading.Event()

    def traffic(client: int) -> None:
        n = 0
        while not stop.is_set() and n < 1000:
            results.append(_post(gw, seeded.key, session=f"mr-restart-{client}", prompt=f"r{n}").status_code)
            n += 1

    # Four clients at once, so both Envoy workers' access-log streams carry entries while the replica drains.
    threads = [threading.Thread(target=traffic, args=(c,), daemon=True) for c in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(results) >= 10, timeout=30, what="traffic flowing")
        gw.replicas[1].stop()  # SIGTERM: drains (NOT_SERVING, health checks take it out), then exits
        before_start = len(results)
        gw.start_replica(1)
        gw.wait_replicas_healthy(2)
        wait_until(lambda: _picks(gw, 1, "mr-restart") > 0, timeout=30, what="restarted replica back in rotation")
        wait_until(lambda: len(results) >= before_start + 10, timeout=30, what="traffic after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert results and all(status == 200 for status in results), [s for s in results if s != 200]

    def rows() -> list[RequestLog]:
        # The seed's readiness probe is a `usage` row of this pool too: count the turns only.
        return [r for r in gw.request_logs(pool_id=seeded.pool_id) if r.route_family == gc.ROUTE_RESPONSES]

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: len(rows()) >= len(results), timeout=20, what="rows")
    written = rows()
    assert len(written) == len(results), f"{len(results) - len(written)} of {len(results)} rows missing"
    assert len({r.request_id for r in written}) == len(results)
