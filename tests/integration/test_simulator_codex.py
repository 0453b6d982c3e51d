"""The simulator's Codex backend over real HTTP and websocket clients: events, auth, models, compact, journal."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import zstandard

from tests.support.processes import VENV_BIN
from tests.support.simulator import (
    RunningSimulator,
    bearer,
    parse_sse,
    running_simulator,
    turn_body,
    upgrade_headers,
    ws_turn_events,
)

pytestmark = pytest.mark.integration
BETA = {"OpenAI-Beta": "responses_websockets=2026-02-06"}


def post_turn(sim: RunningSimulator, token: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(f"{sim.codex_base_url}/responses", json=body, headers={**bearer(token), **headers}, timeout=10)


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_sse_turn_has_the_event_sequence_and_usage(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.configure(text="Alpha beta gamma from {model}.")
    resp = post_turn(sim, sim.client.access_token("acct-1"), turn_body(model="gpt-5.1-codex-mini"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(resp.text)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created"
    assert kinds.index("response.output_item.added") < kinds.index("response.output_text.delta")
    assert kinds.index("response.output_item.done") < kinds.index("response.completed") == len(kinds) - 1
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Alpha beta gamma from gpt-5.1-codex-mini."
    done = events[-1]["response"]
    assert done["model"] == "gpt-5.1-codex-mini" and done["id"].startswith("resp_")
    usage = done["usage"]
    assert usage["output_tokens"] == 5 and usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    for slot in ("primary", "secondary"):
        for suffix in ("used-percent", "window-minutes", "reset-at", "reset-after-seconds"):
            assert f"x-codex-{slot}-{suffix}" in resp.headers
    assert resp.headers["x-codex-plan-type"] == "plus" and resp.headers["x-codex-active-limit"]


def test_non_streaming_json_zstd_body_and_prompt_cache(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    token = sim.client.access_token("acct-1")
    body = turn_body(stream=False, model="gpt-5.1-codex", prompt_cache_key="conv-1")
    raw = zstandard.ZstdCompressor().compress(json.dumps(body).encode())
    headers = {**bearer(token), "Content-Encoding": "zstd", "Content-Type": "application/json"}
    first = httpx.post(f"{sim.codex_base_url}/responses", content=raw, headers=headers, timeout=10)
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/json")
    obj = first.json()
    assert obj["status"] == "completed" and obj["model"] == "gpt-5.1-codex"
    assert obj["output"][0]["content"][0]["text"] == sim.client.config()["text"]
    # The same prompt_cache_key on the same account reads the earlier prompt from cache.
    second = httpx.post(f"{sim.codex_base_url}/responses", content=raw, headers=headers, timeout=10).json()
    assert second["usage"]["input_tokens_details"]["cached_tokens"] == obj["usage"]["input_tokens"]


def test_scripted_function_call(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.script_function_call("shell", {"command": ["ls", "-la"]}, call_id="call_42")
    events = parse_sse(post_turn(sim, sim.client.access_token("acct-1"), turn_body()).text)
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert items == [
        {
            "type": "function_call",
            "id": items[0]["id"],
            "status": "completed",
            "name": "shell",
            "arguments": json.dumps({"command": ["ls", "-la"]}),
            "call_id": "call_42",
        }
    ]
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert json.loads(args) == {"command": ["ls", "-la"]}
    # The script is used once; the next turn is the configured text again.
    events = parse_sse(post_turn(sim, sim.client.access_token("acct-1"), turn_body()).text)
    assert any(e["type"] == "response.output_text.delta" for e in events)


def test_auth_rules(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    auth = sim.client.make_auth("acct-2")
    token = auth["tokens"]["access_token"]
    assert post_turn(sim, token, turn_body(), **{"ChatGPT-Account-Id": "acct-2"}).status_code == 200
    cases = {
        "missing_authorization": httpx.post(f"{sim.codex_base_url}/responses", json=turn_body(), timeout=10),
        "invalid_token": post_turn(sim, token[:-4] + "AAAA", turn_body()),
        "account_mismatch": post_turn(sim, token, turn_body(), **{"ChatGPT-Account-Id": "acct-1"}),
    }
    id_token_as_bearer = post_turn(sim, auth["tokens"]["id_token"], turn_body())
    assert id_token_as_bearer.status_code == 401
    for code, resp in cases.items():
        assert resp.status_code == 401, code
        assert resp.json()["error"]["code"] == code
    expired = sim.client.make_auth("acct-2", expired=True)["tokens"]["access_token"]
    assert post_turn(sim, expired, turn_body()).json()["error"]["code"] == "token_expired"
    # Tokens expire by the simulated clock too (access tokens live ~10 days).
    sim.client.advance_clock(11 * 86400)
    assert post_turn(sim, token, turn_body()).json()["error"]["code"] == "token_expired"


def test_unknown_account_in_valid_token_is_created_on_first_sight(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    out = subprocess.run(
        [
            str(VENV_BIN / "pooler"),
            "simulator",
            "make-auth",
            "--account",
            "acct-new",
            "--plan",
            "pro",
            "--email",
            "new@example.test",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    auth = json.loads(out.stdout)
    assert auth["auth_mode"] == "chatgpt" and auth["OPENAI_API_KEY"] is None
    assert auth["tokens"]["account_id"] == "acct-new" and auth["tokens"]["refresh_token"].startswith("rt_")
    id_claims = claims(auth["tokens"]["id_token"])
    assert id_claims["email"] == "new@example.test"
    assert id_claims["https://api.openai.com/auth"]["chatgpt_account_id"] == "acct-new"
    assert id_claims["https://api.openai.com/auth"]["chatgpt_plan_type"] == "pro"
    assert id_claims["https://api.openai.com/auth"]["chatgpt_user_id"]
    access = claims(auth["tokens"]["access_token"])
    assert 9 * 86400 < access["exp"] - access["iat"] <= 10 * 86400
    assert "acct-new" not in [a["account_id"] for a in sim.client.accounts()]
    resp = post_turn(sim, auth["tokens"]["access_token"], turn_body())
    assert resp.status_code == 200 and resp.headers["x-codex-plan-type"] == "pro"
    assert sim.client.account("acct-new")["plan"] == "pro"


def test_models_etag_and_compact_and_usage_alias(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    headers = bearer(sim.client.access_token("acct-1"))
    models = httpx.get(f"{sim.codex_base_url}/models", params={"client_version": "0.169.0"}, headers=headers)
    assert models.status_code == 200 and models.json()["models"][0]["slug"]
    etag = models.headers["etag"]
    again = httpx.get(
        f"{sim.codex_base_url}/models", params={"client_version": "0.169.0"}, headers={**headers, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    compact = httpx.post(f"{sim.codex_base_url}/responses/compact", json=turn_body(), headers=headers)
    assert compact.status_code == 200
    assert compact.json()["output"][0]["type"] == "message"
    usage = httpx.get(f"{sim.base_url}/api/codex/usage", headers=headers).json()
    assert usage == httpx.get(f"{sim.base_url}/backend-api/wham/usage", headers=headers).json()
    assert usage["plan_type"] == "plus" and usage["rate_limit"]["allowed"] is True


def test_journal_records_bearer_and_account_not_bodies(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    token = sim.client.access_token("acct-3")
    post_turn(sim, token, turn_body("secret prompt"), **{"ChatGPT-Account-Id": "acct-3", "session-id": "s-1"})
    (entry,) = sim.client.journal(route="responses")
    assert entry["method"] == "POST" and entry["status"] == 200 and entry["account"] == "acct-3"
    assert entry["authorization"] == f"Bearer {token}"
    assert entry["bearer_fingerprint"] and entry["bearer_fingerprint"] not in token
    assert entry["headers"]["session-id"] == "s-1" and entry["model"] == "gpt-5.1-codex"
    assert "secret prompt" not in json.dumps(entry)
    # Nothing about the request (tokens, prompts) reaches the process output.
    log = sim.process.log_text()
    assert token not in log and "secret prompt" not in log


async def _ws_session(sim: RunningSimulator, token: str, frames: list[dict[str, Any]]) -> list[Any]:
    received: list[Any] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{sim.codex_base_url}/responses", headers={**bearer(token), **BETA}) as ws,
    ):
        received.append(json.loads((await ws.receive(timeout=5)).data))
        for frame in frames:
            await ws.send_str(json.dumps(frame))
            if frame["type"] != "response.create":
                continue
            while True:
                event = json.loads((await ws.receive(timeout=5)).data)
                received.append(event)
                if event["type"] in ("response.completed", "error"):
                    break
    return received


def test_websocket_turns(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    token = sim.client.access_token("acct-1")
    frames = [
        {"type": "response.create", **turn_body(), "generate": False},
        {"type": "response.append", "input": []},
        {"type": "response.create", **turn_body(model="gpt-5.1-codex-mini")},
        {"type": "response.processed"},
        {"type": "response.create", **turn_body(), "previous_response_id": "resp_unknown"},
    ]
    events = asyncio.run(_ws_session(sim, token, frames))
    assert events[0]["type"] == "codex.rate_limits" and events[0]["rate_limits"]["primary"]["window_minutes"] == 300
    completed = [e for e in events if e["type"] == "response.completed"]
    assert len(completed) == 2
    assert completed[0]["response"]["output"] == [] and completed[0]["response"]["usage"]["total_tokens"] == 0
    assert completed[1]["response"]["model"] == "gpt-5.1-codex-mini"
    assert completed[1]["response"]["usage"]["output_tokens"] > 0
    text = "".join(e.get("delta", "") for e in events if e["type"] == "response.output_text.delta")
    assert text == sim.client.config()["text"]
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "previous_response_not_found"
    upgrade = sim.client.journal(route="responses")[0]
    assert upgrade["transport"] == "websocket" and upgrade["status"] == 101
    assert upgrade["headers"]["openai-beta"].startswith("responses_websockets=")


def test_websocket_requires_the_beta_header(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator

    async def connect() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(
                    f"{sim.codex_base_url}/responses", headers=bearer(sim.client.access_token("acct-1"))
                ):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(connect()) == 400


def test_console_script_starts_with_flags(tmp_path: Path) -> None:
    """`pooler simulator` itself: the ready line, --accounts, --plan, --text and --token-rate reach the server."""
    flags = ["--plan", "pro", "--text", "Flag text.", "--token-rate", "40"]
    with running_simulator(tmp_path, accounts=2, extra_args=flags, cli=True) as sim:
        accounts = sim.client.accounts()
        assert [a["account_id"] for a in accounts] == ["acct-1", "acct-2"]
        assert {a["plan"] for a in accounts} == {"pro"}
        assert sim.client.config()["token_rate"] == 40
        events = parse_sse(post_turn(sim, sim.client.access_token("acct-2"), turn_body()).text)
        assert "".join(e.get("delta", "") for e in events if e["type"] == "response.output_text.delta") == "Flag text."
        assert f"simulator ready on {sim.base_url}" in sim.process.log_text()
    assert not sim.process.alive()


def test_websocket_connection_ages_out_after_an_hour(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator

    async def run() -> tuple[dict[str, Any], aiohttp.WSMsgType]:
        headers = {**bearer(sim.client.access_token("acct-1")), **BETA}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{sim.codex_base_url}/responses", headers=headers) as ws,
        ):
            await ws.receive(timeout=5)  # codex.rate_limits
            await asyncio.to_thread(sim.client.advance_clock, 3601)
            await ws.send_str(json.dumps({"type": "response.create", **turn_body()}))
            error = json.loads((await ws.receive(timeout=5)).data)
            return error, (await ws.receive(timeout=5)).type

    error, after = asyncio.run(run())
    assert error["type"] == "error" and error["error"]["code"] == "websocket_connection_limit_reached"
    assert after in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


ENCRYPTED = {"include": ["reasoning.encrypted_content"]}


def _completed(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    response: dict[str, Any] = parse_sse(resp.text)[-1]["response"]
    return response


def test_account_bound_state_over_http(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.configure(reasoning_tokens=3)
    one, two = sim.client.access_token("acct-1"), sim.client.access_token("acct-2")
    first = _completed(post_turn(sim, one, turn_body(**ENCRYPTED)))
    reasoning = first["output"][0]
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"].startswith("gAAAA")
    # Codex replays the reasoning item with the next turn's input: the same account takes it back.
    replay = turn_body(**ENCRYPTED)
    replay["input"] = [*replay["input"], reasoning, *first["output"][1:]]
    assert _completed(post_turn(sim, one, replay))["status"] == "completed"
    chained = turn_body(previous_response_id=first["id"])
    assert _completed(post_turn(sim, one, chained))["status"] == "completed"
    # Another account refuses both, with the backend's error body.
    moved = post_turn(sim, two, replay)
    assert moved.status_code == 400
    assert moved.json()["error"]["code"] == "invalid_encrypted_content"
    assert moved.json()["error"]["type"] == "invalid_request_error"
    lost = post_turn(sim, two, chained)
    assert lost.status_code == 400 and lost.json()["error"] == {
        "message": f"Previous response with id '{first['id']}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    # Without `include` (or without reasoning) no sealed item is produced: old callers see the same output.
    plain = _completed(post_turn(sim, one, turn_body()))
    assert [item["type"] for item in plain["output"]] == ["message"]
    # A compaction item from the compact endpoint is sealed the same way.
    compact = httpx.post(f"{sim.codex_base_url}/responses/compact", json=turn_body(), headers=bearer(one)).json()
    sealed = compact["output"][-1]
    assert sealed["type"] == "compaction"
    body = turn_body(input=[sealed])
    assert post_turn(sim, one, body).status_code == 200
    assert post_turn(sim, two, body).json()["error"]["code"] == "invalid_encrypted_content"
    again = httpx.post(f"{sim.codex_base_url}/responses/compact", json=body, headers=bearer(two))
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_encrypted_content"


def test_turn_state_is_issued_per_account_and_its_echo_journaled(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    one, two = sim.client.access_token("acct-1"), sim.client.access_token("acct-2")
    issued = post_turn(sim, one, turn_body()).headers["x-codex-turn-state"]
    assert issued
    # Echoed to its own account: kept. Echoed to another account: that account issues its own.
    assert post_turn(sim, one, turn_body(), **{"x-codex-turn-state": issued}).headers["x-codex-turn-state"] == issued
    elsewhere = post_turn(sim, two, turn_body(), **{"x-codex-turn-state": issued}).headers["x-codex-turn-state"]
    assert elsewhere != issued
    post_turn(sim, one, turn_body(), **{"x-codex-turn-state": "ts_never_issued"})
    entries = sim.client.journal(route="responses")
    assert [(e["account"], e["turn_state_issuer"]) for e in entries] == [
        ("acct-1", None),
        ("acct-1", "acct-1"),
        ("acct-2", "acct-1"),
        ("acct-1", "unknown"),
    ]


def test_websocket_upgrade_headers_and_account_bound_state(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.configure(reasoning_tokens=2)
    metadata = json.dumps({"model": "gpt-5.1-codex-mini", "turn_id": "t-1"})

    async def run(token: str, echo: str | None, frames: list[dict[str, Any]]) -> tuple[dict[str, str], list[Any]]:
        headers = {**bearer(token), **BETA, "x-codex-turn-metadata": metadata}
        if echo:
            headers["x-codex-turn-state"] = echo
        events: list[Any] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{sim.codex_base_url}/responses", headers=headers) as ws,
        ):
            await ws.receive(timeout=5)  # codex.rate_limits
            for frame in frames:
                await ws.send_str(json.dumps(frame))
                events += await ws_turn_events(ws, timeout=5)
            return upgrade_headers(ws), events

    one, two = sim.client.access_token("acct-1"), sim.client.access_token("acct-2")
    create = {"type": "response.create", **turn_body(**ENCRYPTED)}
    upgrade, events = asyncio.run(run(one, None, [create]))
    assert upgrade["x-codex-turn-state"].startswith("ts_")
    assert upgrade["x-models-etag"] and upgrade["openai-model"] == "gpt-5.1-codex-mini"
    assert upgrade["x-reasoning-included"] == "true"
    done = events[-1]["response"]
    follow_up = {"type": "response.create", **turn_body(**ENCRYPTED), "previous_response_id": done["id"]}
    replay = {"type": "response.create", **turn_body(**ENCRYPTED, input=done["output"])}
    _, same = asyncio.run(run(one, upgrade["x-codex-turn-state"], [follow_up, replay]))
    assert [e["type"] for e in same if e["type"] in ("response.completed", "error")] == ["response.completed"] * 2
    other_upgrade, other = asyncio.run(run(two, upgrade["x-codex-turn-state"], [follow_up, replay]))
    assert other_upgrade["x-codex-turn-state"] != upgrade["x-codex-turn-state"]
    errors = [e for e in other if e["type"] == "error"]
    assert [(e["status"], e["error"]["code"]) for e in errors] == [
        (400, "previous_response_not_found"),
        (400, "invalid_encrypted_content"),
    ]
    upgrades = [e for e in sim.client.journal(route="responses") if e["method"] == "GET"]
    assert [(e["account"], e["turn_state_issuer"]) for e in upgrades] == [
        ("acct-1", None),
        ("acct-1", "acct-1"),
        ("acct-2", "acct-1"),
    ]
