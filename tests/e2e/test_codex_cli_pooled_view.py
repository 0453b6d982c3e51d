"""The real Codex CLI, in HTTP (SSE) and websocket mode, receives the *pool's* rate limits.

Set-up: a gateway (simulator + ext_proc + Envoy, tests/support/gateway.py) with one pool of 3 simulated plus
accounts at known usage (5 h: 10/40/70 %, weekly: 5/20/50 %) and `pooled_rate_limits` on; the gateway first
learns each account's windows from one turn each. The CLI is pointed at a tiny recording TCP proxy in front of
Envoy's port, so the test sees exactly the bytes that reached the CLI process.

Proven:
- HTTP mode: the `x-codex-*` rate-limit headers of the `POST .../responses` reply the CLI received equal the
  pooled aggregate - the gateway's `/backend-api/wham/usage` for that pool, and the hand-computed plan-weighted
  mean (40 % / 25 %, ±1 because each turn moves the serving account's usage a little);
- websocket mode: the 101 headers and every `codex.rate_limits` event frame the CLI received carry the same
  aggregate, no permessage-deflate was negotiated (so the frames were rewritable), and the turn's other
  events arrived (the CLI printed the answer);
- no `x-pooler-*` header reached the CLI; the CLI exits 0 in both modes.
Not proven: what the CLI *displays* (its TUI status line; `codex exec` prints no rate limits) - only that its
rate-limit inputs (headers and events, which it parses into its snapshot) are the pooled figures.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_codex_cli_gateway import ANSWER, run_codex
from tests.support.codex_cli import MODEL
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import free_port, wait_until
from tests.support.simulator import turn_body
from tests.support.websocket_frames import frame_head

pytestmark = pytest.mark.e2e
USAGE = {"acct-cv1": (10, 5), "acct-cv2": (40, 20), "acct-cv3": (70, 50)}
POOLED = (40, 25)  # equal plan weights: the mean of each window


@dataclass
class Recorded:
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)


class RecordingProxy:
    """127.0.0.1 TCP proxy to `target_port`, recording both directions of every connection (own event loop)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections: list[Recorded] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        record = Recorded()
        self.connections.append(record)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, into: bytearray) -> None:
            try:
                while data := await r.read(65536):
                    into += data
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pump(client_r, server_w, record.to_server), pump(server_r, client_w, record.to_client))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    """Websocket frames after a 101: (opcode, payload), RSV1 frames kept raw."""
    rsv1: bool = False


def _headers(block: bytes) -> tuple[str, dict[str, str]]:
    lines = block.decode("latin-1").split("\r\n")
    return lines[0], {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}


def parse_responses(data: bytes) -> list[Response]:
    """The HTTP/1.1 responses of one connection, in order (chunked or content-length bodies, or a 101 + frames)."""
    out: list[Response] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        status_line, headers = _headers(data[pos:end])
        response = Response(int(status_line.split()[1]), headers)
        out.append(response)
        pos = end + 4
        if response.status == 101:
            while pos + 2 <= len(data):
                b0, n, head = frame_head(data, pos)
                response.rsv1 = response.rsv1 or bool(b0 & 0x40)
                response.frames.append((b0 & 0x0F, data[pos + head : pos + head + n]))
                pos += head + n
            break
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                line_end = data.find(b"\r\n", pos)
                if line_end <= pos:
                    # The client closed after the last event it needed, before the terminating chunk reached it
                    # (it can come in a write of its own, e.g. after the gateway's first-event hold let go).
                    return out
                size = int(data[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
        else:
            pos += int(headers.get("content-length", "0"))
    return out


def _usage(gw: Gateway, key: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/backend-api/wham/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def pooled(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    with running_gateway(sqlite_url, tmp_path_factory.mktemp("cli-view")) as gw:
        seeded = gw.seed_pool("cli-view", list(USAGE), strategy="round-robin", pooled_rate_limits=True)
        for acct, (p, s) in USAGE.items():
            gw.simulator.client.upsert_account(acct, primary_used_percent=p, secondary_used_percent=s)
        gw.simulator.client.configure(text=ANSWER)
        auth = {"Authorization": f"Bearer {seeded.key}"}
        for _ in USAGE:  # one turn per account (round robin): the gateway learns every account's windows
            assert (
                httpx.post(f"{gw.codex_base}/responses", json=turn_body(), headers=auth, timeout=30).status_code == 200
            )

        def learnt() -> bool:
            rate = _usage(gw, seeded.key)["rate_limit"]
            return bool(rate["primary_window"]) and abs(rate["primary_window"]["used_percent"] - POOLED[0]) <= 1

        wait_until(learnt, timeout=20, what="pooled usage from the three accounts' evidence")
        yield gw, seeded.key


def _assert_pooled(primary: dict[str, Any], secondary: dict[str, Any], usage: dict[str, Any]) -> None:
    """`primary`/`secondary` as the CLI received them: used_percent, window_minutes, reset_at."""
    rate = usage["rate_limit"]
    for got, slot, hand in ((primary, "primary", POOLED[0]), (secondary, "secondary", POOLED[1])):
        want = rate[f"{slot}_window"]
        assert abs(int(got["used_percent"]) - want["used_percent"]) <= 1, (slot, got, want)
        assert abs(int(got["used_percent"]) - hand) <= 1, (slot, got, hand)
        assert int(got["window_minutes"]) == want["limit_window_seconds"] // 60
        assert int(got["reset_at"]) == want["reset_at"]


def _from_headers(headers: dict[str, str], slot: str) -> dict[str, str]:
    return {k: headers[f"x-codex-{slot}-{k.replace('_', '-')}"] for k in ("used_percent", "window_minutes", "reset_at")}


@pytest.mark.parametrize("websockets", [False, True], ids=["http-sse", "websocket"])
def test_codex_cli_receives_the_pooled_rate_limits(
    pooled: tuple[Gateway, str], tmp_path: Path, websockets: bool
) -> None:
    gw, key = pooled
    port = int(gw.url.rsplit(":", 1)[1])
    with RecordingProxy(port) as proxy:
        result = run_codex(f"http://127.0.0.1:{proxy.port}/backend-api/codex", key, tmp_path, websockets)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ANSWER.format(model=MODEL) in result.stdout
    usage = _usage(gw, key)

    responses = [r for conn in proxy.connections for r in parse_responses(bytes(conn.to_client))]
    assert responses, "nothing went through the recording proxy"
    assert not any(k.startswith("x-pooler-") for r in responses for k in r.headers)
    if not websockets:
        turns = [r for r in responses if r.status == 200 and "x-codex-primary-used-percent" in r.headers]
        assert turns, [(r.status, sorted(r.headers)) for r in responses]
        for r in turns:
            _assert_pooled(_from_headers(r.headers, "primary"), _from_headers(r.headers, "secondary"), usage)
            assert r.headers["x-codex-plan-type"] == usage["plan_type"]
        return

    upgrades = [r for r in responses if r.status == 101]
    assert upgrades, [(r.status, sorted(r.headers)) for r in responses]
    events: list[dict[str, Any]] = []
    for r in upgrades:
        assert "sec-websocket-extensions" not in r.headers and not r.rsv1  # uncompressed: rewritable
        _assert_pooled(_from_headers(r.headers, "primary"), _from_headers(r.headers, "secondary"), usage)
        events += [json.loads(payload) for opcode, payload in r.frames if opcode == 1]
    rate_events = [e for e in events if e.get("type") == "codex.rate_limits"]
    assert rate_events, [e.get("type") for e in events]
    for event in rate_events:
        limits = event["rate_limits"]
        _assert_pooled(limits["primary"], limits["secondary"], usage)
        assert event["plan_type"] == usage["plan_type"]
        assert limits["allowed"] is True and limits["limit_reached"] is False
    assert any(e.get("type") == "response.completed" for e in events)
