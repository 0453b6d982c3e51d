"""Real Envoy + ext_proc + PostgreSQL + simulator: what the upstream sees of a request, per account.

The simulator's journal keeps every header each request arrived with. Whatever the client or a proxy in front
sent, the upstream gets a Codex client's headers, the account's bearer and ChatGPT-Account-Id - no forwarding,
Envoy or gateway headers - and an installation id of its own per account. The gateway's own calls (usage poll,
token refresh) present a Codex identity and keep each account's cookies to that account.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from pooler.audit import SYSTEM
from pooler.codex_client import CODEX_CLI_VERSION, make_http_client
from pooler.gateway.upstream_identity import forbidden_upstream
from pooler.services.refresh import Outcome, RefreshDeps, refresh_account
from pooler.services.usage_poll import PollDeps, PollOutcome, poll_account
from pooler.settings import set_setting
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration

INSTALLATION = "5f0c8a1e-0000-4000-8000-00000000c0de"
# What a proxy in front of the gateway, or a careless client, adds: none of it may reach an account.
PROXY_HEADERS = {
    "x-forwarded-for": "203.0.113.9",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "gateway.example",
    "x-real-ip": "203.0.113.9",
    "via": "1.1 edge",
    "forwarded": "for=203.0.113.9",
    "x-request-id": "client-chosen-id",
    "x-envoy-original-path": "/elsewhere",
    "x-pooler-view-plan-type": "spoofed",
    "x-pooler-decided": "forged",  # the decision guard's mark: only the ext_proc may set it, nobody sees it
    "cookie": "__cf_bm=from-another-account",
}


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-upstream-identity")) as gateway:
        with gateway.ctx.session_factory.begin() as session:
            set_setting(session, "auth_base_url", gateway.simulator.base_url, actor=SYSTEM)
        yield gateway


def _end(gw: Gateway) -> int:
    journal = gw.simulator.client.journal()
    return int(journal[-1]["seq"]) if journal else 0


def _codex_headers(key: str, **extra: str) -> dict[str, str]:
    metadata = json.dumps({"turn_id": "t-1", "installation_id": INSTALLATION, "model": "gpt-5.1-codex"})
    return {
        "Authorization": f"Bearer {key}",
        "originator": "codex_cli_rs",
        "version": "0.171.0",
        "x-codex-installation-id": INSTALLATION,
        "x-codex-turn-metadata": metadata,
        **PROXY_HEADERS,
        **extra,
    }


def _assert_clean(entries: list[dict[str, Any]]) -> None:
    """No entry carries a proxy, Envoy or gateway header, nor a cookie the client sent."""
    assert entries
    for entry in entries:
        received: dict[str, str] = entry["received"]
        leaked = sorted(name for name in received if forbidden_upstream(name))
        assert not leaked, (entry["path"], leaked)
        assert entry["authorization"].startswith("Bearer ") and "cpk_" not in entry["authorization"]
        assert received.get("chatgpt-account-id") == entry["account"]


def _codex_body(prompt: str) -> dict[str, Any]:
    """A turn whose body names the installation as Codex CLI 0.171.0's does (twice, in client_metadata)."""
    turn = json.dumps({"installation_id": INSTALLATION, "model": "gpt-5.1-codex"})
    metadata = {"x-codex-installation-id": INSTALLATION, "x-codex-turn-metadata": turn}
    return turn_body(prompt, client_metadata=metadata)


def _installations(entries: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per account, every installation id it saw (headers, turn metadata and the body's client_metadata)."""
    seen: dict[str, set[str]] = {}
    for entry in entries:
        received = entry["received"]
        ids = seen.setdefault(entry["account"], set())
        ids.update(entry.get("body_installations") or ())
        if "x-codex-installation-id" in received:
            ids.add(received["x-codex-installation-id"])
        if "x-codex-turn-metadata" in received:
            ids.add(json.loads(received["x-codex-turn-metadata"])["installation_id"])
    return seen


def _two_accounts(gw: Gateway, name: str) -> SeededPool:
    # Round robin and no session: consecutive requests go to both accounts.
    return gw.seed_pool(name, [f"acct-{name}-a", f"acct-{name}-b"], strategy="round-robin", sticky_ttl_seconds=0)


def test_http_routes_reach_each_account_clean_with_its_own_installation_id(gw: Gateway) -> None:
    seeded = _two_accounts(gw, "idh")
    since = _end(gw)
    headers = _codex_headers(seeded.key)
    for n in range(4):
        sse = httpx.post(
            f"{gw.codex_base}/responses",
            json=_codex_body(f"hello {n}"),
            headers={**headers, "Accept": "text/event-stream"},
            timeout=30,
        )
        assert sse.status_code == 200, sse.text
    compact = httpx.post(f"{gw.codex_base}/responses/compact", json=turn_body(), headers=headers, timeout=30)
    assert compact.status_code == 200, compact.text
    models = httpx.get(f"{gw.codex_base}/models", params={"client_version": "0.171.0"}, headers=headers, timeout=30)
    assert models.status_code == 200, models.text
    entries = gw.simulator.client.journal(since=since)
    assert {e["route"] for e in entries} >= {"responses", "compact", "models"}
    _assert_clean(entries)
    # The client's own identity headers pass as they are; its installation id never does.
    assert all(e["received"].get("originator") == "codex_cli_rs" for e in entries)
    assert all(e["body_installations"] for e in entries if e["route"] == "responses")
    ids = _installations(entries)
    assert set(ids) == set(seeded.accounts)
    # Stable per account: headers, turn metadata and the body's two copies all name the account's own id.
    assert all(len(seen) == 1 for seen in ids.values()), ids
    first, second = (next(iter(seen)) for seen in ids.values())
    assert first != second and INSTALLATION not in first + second
    # Stable across requests for the same (account, client): a second round gives the same ids.
    again_since = _end(gw)
    for n in range(2):
        httpx.post(f"{gw.codex_base}/responses", json=_codex_body(f"again {n}"), headers=headers, timeout=30)
    assert _installations(gw.simulator.client.journal(since=again_since)) == ids


def test_a_failed_over_attempt_gets_the_next_accounts_id_and_no_proxy_headers(gw: Gateway) -> None:
    seeded = gw.seed_pool("idf", ["acct-idf-a", "acct-idf-b"], strategy="round-robin", sticky_ttl_seconds=0)
    gw.simulator.client.add_fault("status", status=503, count=1)  # whichever account the first attempt gets
    since = _end(gw)
    response = httpx.post(
        f"{gw.codex_base}/responses", json=_codex_body("hi"), headers=_codex_headers(seeded.key), timeout=30
    )
    assert response.status_code == 200, response.text
    entries = [e for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"]
    assert len(entries) == 2 and len({e["account"] for e in entries}) == 2  # 503, then served by the other
    _assert_clean(entries)
    ids = _installations(entries)
    assert all(len(seen) == 1 for seen in ids.values()) and len(set.union(*ids.values())) == 2
    # The retry's body was rewritten for its own account, from the client's body (not the first attempt's).
    assert entries[-1]["body_installations"] and INSTALLATION not in set.union(*ids.values())
    # The request log still has every attempt, with its account and status (the id is the gateway's own).
    rows = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")
    assert [a.status_code for a in rows[-1].attempts] == [503, 200]
    assert rows[-1].request_id != "client-chosen-id"


def test_websocket_upgrade_reaches_the_account_clean(gw: Gateway) -> None:
    seeded = gw.seed_pool("idw", ["acct-idw"])
    since = _end(gw)

    async def run() -> str:
        headers = {k: v for k, v in _codex_headers(seeded.key).items() if k.lower() != "cookie"}
        async with (
            aiohttp.ClientSession(cookies={"__cf_bm": "from-another-account"}) as session,
            session.ws_connect(gw.ws_url, headers=headers) as ws,
        ):
            await ws.send_json({"type": "response.create", **turn_body("ws hello")})
            while True:
                msg = await asyncio.wait_for(ws.receive(), 20)
                event = json.loads(msg.data)
                if event.get("type") in ("response.completed", "error", "response.failed"):
                    return str(event["type"])

    assert asyncio.run(run()) == "response.completed"
    upgrades = [e for e in gw.simulator.client.journal(since=since) if e["method"] == "GET"]
    assert upgrades and upgrades[0]["transport"] == "websocket"
    _assert_clean(upgrades)
    assert _installations(upgrades)["acct-idw"] != {INSTALLATION}


def test_v1_routes_present_the_codex_identity_not_the_sdk(gw: Gateway) -> None:
    seeded = gw.seed_pool("idv", ["acct-idv"])
    since = _end(gw)
    with openai.OpenAI(
        base_url=f"{gw.url}/v1", api_key=seeded.key, max_retries=0, timeout=30, default_headers=PROXY_HEADERS
    ) as sdk:
        assert sdk.responses.create(model="gpt-5.1-codex", input="hello").status == "completed"
        chat = sdk.chat.completions.create(model="gpt-5.1-codex", messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content
    entries = gw.simulator.client.journal(since=since)
    assert len(entries) == 2
    _assert_clean(entries)
    for entry in entries:
        received = entry["received"]
        assert not [name for name in received if name.startswith("x-stainless-")], received
        assert received["originator"] == "codex_cli_rs" and received["version"] == CODEX_CLI_VERSION
        assert received["user-agent"].startswith(f"codex_cli_rs/{CODEX_CLI_VERSION} (")


def test_client_responses_carry_no_gateway_headers_and_no_account_cookie(gw: Gateway) -> None:
    seeded = gw.seed_pool("idr", ["acct-idr"])
    response = httpx.post(
        f"{gw.codex_base}/responses", json=turn_body(), headers=_codex_headers(seeded.key), timeout=30
    )
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith(("x-pooler-", "x-envoy-"))], response.headers
    # The upstream sets its cookie on the compact answer (the simulator journals it); the client never gets it.
    since = _end(gw)
    compact = httpx.post(f"{gw.codex_base}/responses/compact", json=turn_body(), headers=_codex_headers(seeded.key))
    assert compact.status_code == 200 and "set-cookie" not in compact.headers
    assert [e["status"] for e in gw.simulator.client.journal(since=since)] == [200]
    # The control: asked directly, the same answer sets it.
    direct = httpx.post(
        f"{gw.simulator.base_url}/backend-api/codex/responses/compact",
        json=turn_body(),
        headers={"Authorization": f"Bearer {seeded.tokens['acct-idr']}", "ChatGPT-Account-Id": "acct-idr"},
    )
    assert direct.status_code == 200 and "__cf_bm=" in direct.headers.get("set-cookie", "")


def test_usage_poll_and_refresh_present_codex_and_keep_cookies_per_account(gw: Gateway) -> None:
    seeded = gw.seed_pool("idc", ["acct-idc-a", "acct-idc-b"])
    a, b = seeded.accounts["acct-idc-a"], seeded.accounts["acct-idc-b"]
    since = _end(gw)
    with make_http_client() as http:
        poll = PollDeps(gw.ctx.session_factory, gw.ctx.box, http)
        refresh = RefreshDeps(gw.ctx.session_factory, gw.ctx.box, http)
        assert poll_account(poll, a, force=True).outcome is PollOutcome.OK  # sets a cookie for a
        assert poll_account(poll, b, force=True).outcome is PollOutcome.OK  # none sent yet; sets b's
        assert refresh_account(refresh, a).outcome is Outcome.REFRESHED  # sends a's
        assert poll_account(poll, b, force=True).outcome is PollOutcome.OK  # sends b's
        assert poll_account(poll, a, force=True).outcome is PollOutcome.OK  # a's newest
    entries = [e for e in gw.simulator.client.journal(since=since) if e["route"] in ("usage", "oauth_token")]
    assert [(e["route"], e["account"]) for e in entries] == [
        ("usage", "acct-idc-a"),
        ("usage", "acct-idc-b"),
        ("oauth_token", "acct-idc-a"),
        ("usage", "acct-idc-b"),
        ("usage", "acct-idc-a"),
    ]
    # The first call of each account sends no cookie; every later one sends back its own account's only.
    assert [e["challenge_cookie_sent"] for e in entries] == [False, False, True, True, True]
    assert all(e["challenge_cookie_of"] == e["account"] for e in entries[2:])
    for entry in entries:
        received = entry["received"]
        assert received["originator"] == "codex_cli_rs" and received["version"] == CODEX_CLI_VERSION
        assert received["user-agent"].startswith(f"codex_cli_rs/{CODEX_CLI_VERSION} (")
        assert "python-httpx" not in received["user-agent"]
