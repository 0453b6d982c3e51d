"""Real Envoy + ext_proc + PostgreSQL or SQLite + simulator: routing, auth errors, header hygiene, evidence rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from pooler.models import Pool, PoolKey
from pooler.states import KeyStatus, PoolStatus
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until
from tests.support.simulator import parse_sse, turn_body, ws_turn_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Both databases: SQLite is the zero-setup default (version poll instead of LISTEN, one writer at a time)."""
    db_url = request.getfixturevalue(f"{request.param}_url")
    with running_gateway(db_url, tmp_path_factory.mktemp(f"gateway-{request.param}")) as gateway:
        yield gateway


def _post(
    gw: Gateway, key: str, prompt: str = "hello", headers: dict[str, str] | None = None, **body: object
) -> httpx.Response:
    return httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body(prompt, **body),
        headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream", **(headers or {})},
        timeout=30,
    )


def _completed(response: httpx.Response) -> dict[str, object]:
    events = parse_sse(response.text)
    done = [e for e in events if e.get("type") == "response.completed"]
    assert done, response.text[:500]
    return done[0]


def test_sse_happy_path_uses_the_account_token_and_logs_tokens(gw: Gateway) -> None:
    seeded = gw.seed_pool("happy", ["acct-h1"])
    since = gw.simulator.client.journal()[-1]["seq"] if gw.simulator.client.journal() else 0
    response = _post(gw, seeded.key, "canary-prompt-happy")
    assert response.status_code == 200, response.text
    _completed(response)
    entries = [e for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"]
    assert entries and entries[-1]["account"] == "acct-h1"
    assert entries[-1]["authorization"] == f"Bearer {seeded.tokens['acct-h1']}"
    assert seeded.key not in json.dumps(entries)
    rows = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")
    row = rows[-1]
    assert row.account_id == seeded.accounts["acct-h1"]
    assert row.status_code == 200 and row.route_family == "responses"
    assert row.key_prefix == seeded.key_prefix
    assert row.total_tokens and row.input_tokens is not None and row.output_tokens
    assert row.model == "gpt-5.1-codex"
    assert row.attempt_count == 1 and row.ttfb_ms is not None and row.duration_ms is not None


def test_websocket_upgrade_swaps_the_bearer(gw: Gateway) -> None:
    seeded = gw.seed_pool("wsock", ["acct-w1"])

    async def run() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                gw.ws_url, headers={"Authorization": f"Bearer {seeded.key}", "session-id": "ws-session-1"}
            ) as ws,
        ):
            await ws.send_json({"type": "response.create", **turn_body("ws hello")})
            return await ws_turn_events(ws)

    events = asyncio.run(run())
    assert events[-1]["type"] == "response.completed", events[-1]
    journal = gw.simulator.client.journal()
    ws_entries = [e for e in journal if e.get("transport") == "websocket" and e["account"] == "acct-w1"]
    assert ws_entries
    assert all(e["authorization"] == f"Bearer {seeded.tokens['acct-w1']}" for e in ws_entries)
    assert ws_entries[0]["headers"].get("openai-beta") == "responses_websockets=2026-02-06"
    rows = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses_ws")
    assert rows[-1].account_id == seeded.accounts["acct-w1"]


def _error(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()["error"]  # type: ignore[no-any-return]


def test_bad_key_revoked_key_and_paused_pool(gw: Gateway) -> None:
    seeded = gw.seed_pool("errs", ["acct-e1"])
    bad = _post(gw, seeded.key[:-4] + "AAAA")
    assert bad.status_code == 401 and _error(bad)["code"] == "invalid_api_key"
    missing = httpx.post(f"{gw.codex_base}/responses", json=turn_body(), timeout=10)
    assert missing.status_code == 401 and _error(missing)["code"] == "missing_api_key"

    gw.update(lambda s: setattr(s.get(Pool, seeded.pool_id), "status", PoolStatus.PAUSED))
    wait_until(lambda: _post(gw, seeded.key).status_code == 503, timeout=15, what="pool paused")
    assert _error(_post(gw, seeded.key))["code"] == "pool_paused"

    def revoke(session: object) -> None:
        key = session.query(PoolKey).filter_by(prefix=seeded.key_prefix).one()  # type: ignore[attr-defined]
        key.status = KeyStatus.REVOKED

    gw.update(revoke)
    wait_until(lambda: _post(gw, seeded.key).status_code == 403, timeout=15, what="key revoked")
    assert _error(_post(gw, seeded.key))["code"] == "key_revoked"


def test_client_sent_internal_headers_never_reach_upstream(gw: Gateway) -> None:
    seeded = gw.seed_pool("hygiene", ["acct-y1"])
    since = max([e["seq"] for e in gw.simulator.client.journal()] or [0])
    response = _post(
        gw,
        seeded.key,
        headers={"chatgpt-account-id": "acct-someone-else", "x-pooler-account": "7", "x-api-key": seeded.key},
    )
    assert response.status_code == 200, response.text
    entry = [e for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"][-1]
    assert entry["headers"]["chatgpt-account-id"] == "acct-y1"
    assert entry["account"] == "acct-y1"
    assert not any(name.startswith("x-pooler-") for name in entry["headers"])


def test_v1_unsupported_and_health(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/v1/embeddings", timeout=5)  # not a /v1 route the gateway serves
    assert r.status_code == 404 and _error(r)["code"] == "unsupported_endpoint"
    assert httpx.get(f"{gw.url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{gw.url}/readyz", timeout=5).status_code == 200


def test_pooled_usage_answered_by_the_gateway(gw: Gateway) -> None:
    seeded: SeededPool = gw.seed_pool("usage", ["acct-u1", "acct-u2"])
    for path in ("/backend-api/wham/usage", "/api/codex/usage"):
        r = httpx.get(f"{gw.url}{path}", headers={"Authorization": f"Bearer {seeded.key}"}, timeout=5)
        assert r.status_code == 200, r.text
        assert "rate_limit" in r.json()
    assert httpx.get(f"{gw.url}/backend-api/wham/usage", timeout=5).status_code == 401
