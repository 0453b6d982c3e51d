"""Two Envoys, each with its own listener, over the same two ext_proc replicas (replica mode,
POOLER_EXTPROC_SHARED) and the same PostgreSQL: a session's turns alternating between the Envoys stay
on one account, and a key's requests/min holds across both Envoys."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from pooler.envoy_config import Endpoint
from tests.support.gateway import Gateway, running_gateway, start_envoy
from tests.support.processes import free_port, port_open, wait_until
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@dataclass
class TwoEnvoys:
    gw: Gateway
    """Envoy A (its url), both ext_proc replicas, the database and the simulator."""
    second_url: str
    """Envoy B: rendered from A's config with its own listener, admin port, local socket and access-log file."""

    @property
    def urls(self) -> tuple[str, str]:
        return self.gw.url, self.second_url


def _healthy_replicas(admin_port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{admin_port}/clusters", timeout=5).text
    lines = [x for x in text.splitlines() if x.startswith("pooler_extproc::") and "::health_flags::" in x]
    return sum(x.endswith("::healthy") for x in lines)


@pytest.fixture(scope="module")
def envoys(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoEnvoys]:
    log_dir = tmp_path_factory.mktemp("multi-envoy")
    with running_gateway(postgres_url, log_dir, extproc_replicas=2) as gw:
        assert gw.config is not None
        port, admin_port = free_port(), free_port()
        config = dataclasses.replace(
            gw.config,
            listen=Endpoint.tcp("127.0.0.1", port),
            admin=Endpoint.tcp("127.0.0.1", admin_port),
            local=Endpoint.unix(gw.sock_dir / "l2.sock"),  # a listener: one socket per Envoy
            access_log_path=str(log_dir / "envoy2-access.log"),
        )
        second = start_envoy(config, log_dir, name="envoy2")
        try:
            wait_until(lambda: port_open(port) or not second.alive(), timeout=20, what="envoy2 listener")
            if not second.alive():
                raise RuntimeError("envoy2 exited:\n" + second.log_text()[-3000:])
            # Its own health checks must see both replicas before it gets traffic (panic mode is off).
            wait_until(lambda: _healthy_replicas(admin_port) >= 2, timeout=20, what="envoy2: 2 healthy ext_procs")
            yield TwoEnvoys(gw, f"http://127.0.0.1:{port}")
        except BaseException:
            print(f"----- envoy2 (last 4000 chars) -----\n{second.log_text()[-4000:]}")
            raise
        finally:
            second.stop()


def _post(base: str, key: str, session: str | None = None, prompt: str = "hi") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if session:
        headers["session-id"] = session
    return httpx.post(f"{base}/backend-api/codex/responses", json=turn_body(prompt), headers=headers, timeout=30)


def test_session_alternating_envoys_stays_on_one_account(envoys: TwoEnvoys) -> None:
    gw = envoys.gw
    seeded = gw.seed_pool("me-sticky", ["acct-e1", "acct-e2", "acct-e3"], strategy="round-robin")
    since = max([e["seq"] for e in gw.simulator.client.journal()] or [0])
    for turn in range(20):
        response = _post(envoys.urls[turn % 2], seeded.key, session="me-session-1", prompt=f"turn {turn}")
        assert response.status_code == 200, (turn, response.text)
    served = [e["account"] for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"]
    assert len(served) == 20 and len(set(served)) == 1, served
    # Without a session the round-robin strategy spreads over the same Envoys: stickiness kept the session together.
    for n in range(6):
        assert _post(envoys.urls[n % 2], seeded.key).status_code == 200
    spread = [e["account"] for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"][20:]
    assert len(set(spread)) > 1, spread


def test_requests_per_minute_holds_across_envoys(envoys: TwoEnvoys) -> None:
    # 6/min: seed_pool's readiness probe (one authenticated usage request through Envoy A) is the first.
    seeded = envoys.gw.seed_pool("me-limit", ["acct-e4"], key_fields={"requests_per_minute": 6})
    answers = [(n % 2, _post(envoys.urls[n % 2], seeded.key).status_code) for n in range(12)]
    statuses = [status for _, status in answers]
    assert statuses.count(200) == 5, answers
    assert statuses.count(429) == 7, answers
    # Both Envoys admitted and both refused: the limit is one budget, not one per Envoy (that would admit 11).
    assert {envoy for envoy, status in answers if status == 200} == {0, 1}, answers
    assert {envoy for envoy, status in answers if status == 429} == {0, 1}, answers
    for base in envoys.urls:
        refused = _post(base, seeded.key)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
