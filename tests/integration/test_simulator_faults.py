"""Each scripted fault and what a client sees."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import httpx
import pytest

from tests.support.simulator import RunningSimulator, bearer, parse_sse, turn_body

pytestmark = pytest.mark.integration
BETA = {"OpenAI-Beta": "responses_websockets=2026-02-06"}


def turn(sim: RunningSimulator, account: str = "acct-1") -> httpx.Response:
    token = sim.client.access_token(account)
    return httpx.post(f"{sim.codex_base_url}/responses", json=turn_body(), headers=bearer(token), timeout=10)


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (429, "type", "usage_limit_reached"),
        (401, "code", "token_expired"),
        (500, "type", "server_error"),
        (502, "type", "server_error"),
        (503, "code", "server_is_overloaded"),
    ],
)
def test_status_fault_hits_the_next_request_only(
    shared_simulator: RunningSimulator, status: int, kind: str, code: str
) -> None:
    sim = shared_simulator
    sim.client.add_fault("status", status=status, count=1)
    failed = turn(sim)
    assert failed.status_code == status
    assert failed.json()["error"][kind] == code
    if status == 429:
        assert failed.json()["error"]["resets_at"] == int(failed.headers["x-codex-primary-reset-at"])
    assert turn(sim).status_code == 200
    assert [e["status"] for e in sim.client.journal(route="responses")] == [status, 200]


def test_fault_per_account_with_count_and_clear(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("status", status=503, account="acct-2", count=2)
    assert turn(sim, "acct-1").status_code == 200
    assert [turn(sim, "acct-2").status_code for _ in range(3)] == [503, 503, 200]
    sim.client.add_fault("status", status=502, count=None, headers={"Retry-After": "7"})
    assert [turn(sim).status_code for _ in range(3)] == [502, 502, 502]
    assert turn(sim).headers["retry-after"] == "7"
    assert sim.client.clear_faults() == 1 and sim.client.faults() == []
    assert turn(sim).status_code == 200


def test_status_fault_on_oauth_token(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("status", route="oauth_token", status=429, headers={"Retry-After": "3"})
    rt = sim.client.make_auth("acct-1")["tokens"]["refresh_token"]
    body = {"grant_type": "refresh_token", "refresh_token": rt, "client_id": "x"}
    limited = httpx.post(f"{sim.base_url}/oauth/token", json=body, timeout=10)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    # The faulted call did not spend the refresh token.
    assert httpx.post(f"{sim.base_url}/oauth/token", json=body, timeout=10).status_code == 200


def timed_stream(sim: RunningSimulator) -> tuple[float, float, list[dict[str, Any]]]:
    """Seconds to the response headers, seconds to the end, and the events."""
    token = sim.client.access_token("acct-1")
    start = time.monotonic()
    with httpx.stream(
        "POST", f"{sim.codex_base_url}/responses", json=turn_body(), headers=bearer(token), timeout=10
    ) as resp:
        first = time.monotonic() - start
        body = resp.read().decode()
    return first, time.monotonic() - start, parse_sse(body)


def test_delay_before_first_byte(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("delay", seconds=0.6)
    first, _, events = timed_stream(sim)
    assert first >= 0.6 and events[-1]["type"] == "response.completed"
    first, _, _ = timed_stream(sim)
    assert first < 0.6


def test_slow_start_pauses_after_the_opening_events(shared_simulator: RunningSimulator) -> None:
    """A turn slow to start (what the first-event hold waits through): the whole pause falls between
    response.in_progress and the first output, and the turn then completes."""
    sim = shared_simulator
    sim.client.add_fault("slow_start", seconds=0.6)
    _, total, events = timed_stream(sim)
    assert total >= 0.6
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.completed"
    assert sim.client.journal()[-1]["fault"] == "slow_start"


def test_slow_token_rate_and_configured_rate(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.configure(text="one two three four five six seven eight nine ten")
    _, fast, _ = timed_stream(sim)
    sim.client.add_fault("slow", token_rate=20)
    _, slow, events = timed_stream(sim)
    assert slow >= 10 / 20 and slow > fast
    assert events[-1]["type"] == "response.completed"
    sim.client.configure(token_rate=25)  # the benchmark knob: a steady stream rate for every turn
    _, paced, _ = timed_stream(sim)
    assert paced >= 10 / 25


def test_close_mid_stream_truncates_the_response(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("close_mid_stream", after_tokens=3)
    token = sim.client.access_token("acct-1")
    received: list[str] = []
    with (
        pytest.raises(httpx.TransportError),
        httpx.stream(
            "POST", f"{sim.codex_base_url}/responses", json=turn_body(), headers=bearer(token), timeout=10
        ) as resp,
    ):
        assert resp.status_code == 200
        for chunk in resp.iter_text():
            received.append(chunk)
    events = parse_sse("".join(received))
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 3
    assert not any(e["type"] == "response.completed" for e in events)


def test_malformed_sse_event(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("malformed_sse", after_tokens=1)
    _, _, events = timed_stream(sim)
    malformed = [e for e in events if "_malformed" in e]
    assert len(malformed) == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed[0]["_malformed"])


async def ws_turn(sim: RunningSimulator) -> tuple[list[Any], aiohttp.WSMsgType]:
    """Runs one websocket turn; returns the text frames and the message type that ended it."""
    token = sim.client.access_token("acct-1")
    frames: list[Any] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{sim.codex_base_url}/responses", headers={**bearer(token), **BETA}) as ws,
    ):
        await ws.send_str(json.dumps({"type": "response.create", **turn_body()}))
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return frames, msg.type
            frames.append(msg.data)
            if '"response.completed"' in msg.data:
                return frames, msg.type


def test_websocket_closed_without_terminal_event(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("ws_close", after_tokens=2)
    frames, ended = asyncio.run(ws_turn(sim))
    assert ended in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    kinds = [json.loads(f)["type"] for f in frames]
    assert kinds.count("response.output_text.delta") == 2 and "response.completed" not in kinds
    frames, ended = asyncio.run(ws_turn(sim))  # used up: the next connection completes
    assert json.loads(frames[-1])["type"] == "response.completed"


def test_websocket_connection_dropped_and_malformed_frame(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("close_mid_stream", transport="websocket", after_tokens=1)
    frames, ended = asyncio.run(ws_turn(sim))
    assert ended != aiohttp.WSMsgType.TEXT
    assert not any('"response.completed"' in f for f in frames)
    sim.client.add_fault("malformed_sse", transport="websocket", after_tokens=1)
    frames, _ = asyncio.run(ws_turn(sim))
    bad = []
    for frame in frames:
        try:
            json.loads(frame)
        except json.JSONDecodeError:
            bad.append(frame)
    assert len(bad) == 1 and json.loads(frames[-1])["type"] == "response.completed"


def test_status_fault_rejects_the_websocket_handshake(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.add_fault("status", status=429, transport="websocket")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        asyncio.run(ws_turn(sim))
    assert info.value.status == 429
    assert turn(sim).status_code == 200  # the http transport was never affected
