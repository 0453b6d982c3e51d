"""Account-bound session state through the real data plane: a session keeps its account (and so its chained
response ids, encrypted reasoning and turn-state); when it must move, the client gets the upstream's code
unchanged and the old account's turn-state never reaches the new account; the websocket 101's headers reach
the client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.simulator import parse_sse, turn_body, upgrade_headers, ws_turn_events

pytestmark = pytest.mark.integration
ENCRYPTED = {"include": ["reasoning.encrypted_content"]}
TURN_STATE = "x-codex-turn-state"


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-session-state")) as gateway:
        gateway.simulator.client.configure(reasoning_tokens=2)  # turns answer with a sealed reasoning item
        yield gateway


def _post(gw: Gateway, seeded: SeededPool, body: dict[str, Any], session: str, **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {seeded.key}", "session-id": session, **headers}
    return httpx.post(f"{gw.codex_base}/responses", json=body, headers=sent, timeout=30)


def _completed(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    done: dict[str, Any] = parse_sse(resp.text)[-1]["response"]
    return done


def _since(gw: Gateway) -> int:
    return max([e["seq"] for e in gw.simulator.client.journal()] or [0])


def _upstream(gw: Gateway, since: int) -> list[dict[str, Any]]:
    return [e for e in gw.simulator.client.journal(since=since) if e["route"] == "responses"]


def _no_foreign_turn_state(entries: list[dict[str, Any]]) -> None:
    """The journal's proof: every turn-state an account received was one that account issued."""
    for entry in entries:
        if TURN_STATE in entry["headers"]:
            assert entry["turn_state_issuer"] == entry["account"], entry


def test_a_session_keeps_its_account_with_chained_state(gw: Gateway) -> None:
    seeded = gw.seed_pool("state-sticky", ["acct-st1", "acct-st2", "acct-st3"], strategy="round-robin")
    since = _since(gw)
    first_resp = _post(gw, seeded, turn_body("start", **ENCRYPTED), "conv-keep")
    first = _completed(first_resp)
    turn_state = first_resp.headers[TURN_STATE]  # the upstream's header reaches the client
    history = [*turn_body("start")["input"], *first["output"]]
    previous = first["id"]
    for n in range(4):
        body = turn_body(**ENCRYPTED, input=[*history, *turn_body(f"turn {n}")["input"]])
        chained = _post(gw, seeded, {**body, "previous_response_id": previous}, "conv-keep", **{TURN_STATE: turn_state})
        previous = _completed(chained)["id"]
    entries = _upstream(gw, since)
    assert len({e["account"] for e in entries}) == 1 and all(e["status"] == 200 for e in entries)
    # The echo reached the account that issued it, every time.
    assert [e["turn_state_issuer"] for e in entries] == [None] + [entries[0]["account"]] * 4
    _no_foreign_turn_state(entries)


def test_a_forced_move_gives_the_upstream_code_and_drops_the_old_turn_state(gw: Gateway) -> None:
    seeded = gw.seed_pool("state-move", ["acct-mv1", "acct-mv2"])
    since = _since(gw)
    first_resp = _post(gw, seeded, turn_body("start", **ENCRYPTED), "conv-move")
    first = _completed(first_resp)
    turn_state = first_resp.headers[TURN_STATE]
    (home,) = {e["account"] for e in _upstream(gw, since)}
    other = "acct-mv2" if home == "acct-mv1" else "acct-mv1"
    gw.simulator.client.upsert_account(home, primary_used_percent=100)  # the sticky account is spent

    # The chained turn: the home account answers 429, Envoy retries on the other, which does not know the
    # response id - the client gets the upstream's 400 and code as they are (Codex relies on the code).
    since = _since(gw)
    chained = {**turn_body("next", **ENCRYPTED), "previous_response_id": first["id"]}
    lost = _post(gw, seeded, chained, "conv-move", **{TURN_STATE: turn_state})
    assert lost.status_code == 400, lost.text
    assert lost.json()["error"]["code"] == "previous_response_not_found"
    assert lost.json()["error"]["param"] == "previous_response_id"
    entries = _upstream(gw, since)
    assert [(e["account"], e["status"]) for e in entries] == [(home, 429), (other, 400)]
    assert TURN_STATE in entries[0]["headers"] and TURN_STATE not in entries[1]["headers"]

    # The session now lives on the other account; Codex still echoes the turn's first token and replays the
    # encrypted reasoning of the old account: 400 invalid_encrypted_content, again unchanged, token dropped.
    since = _since(gw)
    replay = turn_body(**ENCRYPTED, input=[*turn_body("start")["input"], *first["output"]])
    sealed = _post(gw, seeded, replay, "conv-move", **{TURN_STATE: turn_state})
    assert sealed.status_code == 400, sealed.text
    assert sealed.json()["error"]["code"] == "invalid_encrypted_content"
    entries = _upstream(gw, since)
    assert [(e["account"], e["status"]) for e in entries] == [(other, 400)]
    assert TURN_STATE not in entries[0]["headers"]

    # A 400 is no evidence against the account: the full context without the old account's state is served
    # there, and the new account's own turn-state is then forwarded to it.
    since = _since(gw)
    fresh_resp = _post(gw, seeded, turn_body("start again", **ENCRYPTED), "conv-move")
    fresh = _completed(fresh_resp)
    new_state = fresh_resp.headers[TURN_STATE]
    assert new_state != turn_state
    follow = {**turn_body("go on", **ENCRYPTED), "previous_response_id": fresh["id"]}
    _completed(_post(gw, seeded, follow, "conv-move", **{TURN_STATE: new_state}))
    entries = _upstream(gw, since)
    assert [(e["account"], e["status"]) for e in entries] == [(other, 200), (other, 200)]
    assert entries[1]["headers"][TURN_STATE] == new_state and entries[1]["turn_state_issuer"] == other
    _no_foreign_turn_state(gw.simulator.client.journal())
    gw.simulator.client.upsert_account(home, primary_used_percent=0)
    metrics = gw.metrics_text()
    assert 'pooler_turn_state_dropped_total{pool="state-move"} 2.0' in metrics


def test_a_turn_state_of_unknown_origin_is_not_forwarded(gw: Gateway) -> None:
    seeded = gw.seed_pool("state-unknown", ["acct-un1"])
    since = _since(gw)
    _completed(_post(gw, seeded, turn_body(), "conv-unknown", **{TURN_STATE: "ts_from_elsewhere"}))
    (entry,) = _upstream(gw, since)
    assert TURN_STATE not in entry["headers"]


def _ws(gw: Gateway, seeded: SeededPool, session: str, echo: str | None, frames: list[dict[str, Any]]) -> Any:
    metadata = json.dumps({"model": "gpt-5.1-codex-mini", "turn_id": "t-1"})

    async def run() -> tuple[dict[str, str], list[dict[str, Any]]]:
        headers = {"Authorization": f"Bearer {seeded.key}", "session-id": session, "x-codex-turn-metadata": metadata}
        if echo:
            headers[TURN_STATE] = echo
        events: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as client, client.ws_connect(gw.ws_url, headers=headers) as ws:
            for frame in frames:
                await ws.send_json(frame)
                events += await ws_turn_events(ws)
            return upgrade_headers(ws), events

    return asyncio.run(run())


def test_websocket_101_headers_reach_the_client_and_turn_state_stays_on_its_account(gw: Gateway) -> None:
    seeded = gw.seed_pool("state-ws", ["acct-ws1", "acct-ws2"])
    since = _since(gw)
    create = {"type": "response.create", **turn_body("ws", **ENCRYPTED)}
    upgrade, events = _ws(gw, seeded, "conv-ws", None, [create])
    assert upgrade[TURN_STATE].startswith("ts_")
    assert upgrade["x-models-etag"] and upgrade["x-reasoning-included"] == "true"
    assert upgrade["openai-model"] == "gpt-5.1-codex-mini"
    done = events[-1]["response"]
    # Same session, new connection echoing the token: same account, chained state accepted.
    follow = {"type": "response.create", **turn_body("more", **ENCRYPTED), "previous_response_id": done["id"]}
    again, events = _ws(gw, seeded, "conv-ws", upgrade[TURN_STATE], [follow])
    assert events[-1]["type"] == "response.completed" and again[TURN_STATE] == upgrade[TURN_STATE]
    upgrades = [e for e in _upstream(gw, since) if e["method"] == "GET"]
    (home,) = {e["account"] for e in upgrades}
    assert [e["turn_state_issuer"] for e in upgrades] == [None, home]

    # The home account is spent; an HTTP turn of the session fails over (and moves the session). Reconnecting
    # with the old token then reaches the other account without it, and the chained state fails there.
    gw.simulator.client.upsert_account(home, primary_used_percent=100)
    moved = httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body("http turn"),
        headers={"Authorization": f"Bearer {seeded.key}", "session-id": "conv-ws"},
        timeout=30,
    )
    assert moved.status_code == 200, moved.text
    since = _since(gw)
    elsewhere, events = _ws(gw, seeded, "conv-ws", upgrade[TURN_STATE], [follow])
    assert events[-1]["type"] == "error" and events[-1]["status"] == 400
    assert events[-1]["error"]["code"] == "previous_response_not_found"
    assert elsewhere[TURN_STATE] != upgrade[TURN_STATE]
    (entry,) = [e for e in _upstream(gw, since) if e["method"] == "GET"]
    assert entry["account"] != home and TURN_STATE not in entry["headers"]
    _no_foreign_turn_state(gw.simulator.client.journal())
    gw.simulator.client.upsert_account(home, primary_used_percent=0)


def test_v1_responses_keeps_the_upstream_code_for_lost_state(gw: Gateway) -> None:
    seeded = gw.seed_pool("state-v1", ["acct-ssv1a"])
    body = {"model": "gpt-5.1-codex", "instructions": "be brief", "input": "hi", "previous_response_id": "resp_gone"}
    auth = {"Authorization": f"Bearer {seeded.key}"}
    lost = httpx.post(f"{gw.url}/v1/responses", json=body, headers=auth, timeout=30)
    assert lost.status_code == 400, lost.text
    error = lost.json()["error"]
    assert error["code"] == "previous_response_not_found" and error["type"] == "invalid_request_error"


def test_sealed_state_keeps_its_account_through_a_demotion(gw: Gateway) -> None:
    seeded = gw.seed_pool("state-demoted", ["acct-dm1", "acct-dm2"], strategy="primary-first")
    gw.prefer(seeded, "acct-dm1")
    since = _since(gw)
    first = _completed(_post(gw, seeded, turn_body("start", **ENCRYPTED), "conv-sealed"))
    assert [e["account"] for e in _upstream(gw, since)] == ["acct-dm1"]
    replay = turn_body(**ENCRYPTED, input=[*turn_body("start")["input"], *first["output"]])

    # A 5xx on the home account: Envoy retries on the other account, which cannot open the sealed items (the
    # client gets that 400), and the home account is demoted for a while.
    gw.simulator.client.add_fault("status", status=503, account="acct-dm1", count=1)
    since = _since(gw)
    broken = _post(gw, seeded, replay, "conv-sealed")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_encrypted_content"
    assert [(e["account"], e["status"]) for e in _upstream(gw, since)] == [("acct-dm1", 503), ("acct-dm2", 400)]
    gw.wait_for_logs(2, pool_id=seeded.pool_id)  # the access log delivered the demotion

    # While demoted, a request without sealed items goes elsewhere (primary-first would pick the home account)...
    since = _since(gw)
    _completed(_post(gw, seeded, turn_body("other conversation"), "conv-probe"))
    assert [e["account"] for e in _upstream(gw, since)] == ["acct-dm2"]
    # ... but the sealed conversation stays home: the failed retry did not move it, the demotion does not either.
    since = _since(gw)
    _completed(_post(gw, seeded, replay, "conv-sealed"))
    assert [(e["account"], e["status"]) for e in _upstream(gw, since)] == [("acct-dm1", 200)]
