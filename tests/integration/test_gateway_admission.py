"""Admission control: with a limit of 2 the third concurrent stream gets 503 quickly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pooler.audit import SYSTEM
from pooler.settings import set_setting
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("admission")) as gateway:
        yield gateway


def test_third_concurrent_stream_is_refused_fast(gw: Gateway) -> None:
    seeded = gw.seed_pool("admit", ["acct-ad1", "acct-ad2"])
    auth = {"Authorization": f"Bearer {seeded.key}"}
    gw.update(lambda s: set_setting(s, "admission_limit_responses", 2, actor=SYSTEM))
    gw.simulator.client.add_fault("delay", seconds=3, count=None)
    try:
        with ThreadPoolExecutor(3) as pool:

            def post() -> httpx.Response:
                return httpx.post(f"{gw.codex_base}/responses", json=turn_body(), headers=auth, timeout=30)

            def refused() -> bool:
                slow = [pool.submit(post) for _ in range(2)]
                wait_until(
                    lambda: len([e for e in gw.simulator.client.journal() if e.get("fault") == "delay"]) >= 2,
                    timeout=10,
                    what="two streams held upstream",
                )
                started = time.monotonic()
                third = post()
                elapsed = time.monotonic() - started
                for f in slow:
                    assert f.result().status_code == 200
                gw.simulator.client.clear_journal()
                if third.status_code != 503:
                    return False
                assert third.json()["error"]["code"] == "server_is_overloaded"
                assert third.headers["retry-after"] == "1"
                assert elapsed < 1.0
                return True

            wait_until(refused, timeout=40, interval=0.5, what="admission limit applied")
    finally:
        gw.simulator.client.clear_faults()
    # Slots come back when the access log reports the streams finished (one flush interval).
    wait_until(
        lambda: httpx.post(f"{gw.codex_base}/responses", json=turn_body(), headers=auth, timeout=30).status_code == 200,
        timeout=5,
        what="slots released",
    )
    gw.update(lambda s: set_setting(s, "admission_limit_responses", 0, actor=SYSTEM))
