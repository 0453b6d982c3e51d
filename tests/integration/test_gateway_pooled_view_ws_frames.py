"""The websocket route's frame rewriter (pooler/envoy_config/lua/ws_view.lua) byte for byte, in real Envoy.

Envoy runs the rendered gateway config in `direct` mode (same listener, filters and routes, no ext_proc), so the
scripted upstream itself puts the `x-pooler-ws-view` header on its 101, as the clusters' upstream filter chain
does from the ext_proc's metadata, and the Lua filter does the rest. The upstream is a raw scripted websocket
server: it
writes its frames in pieces (split inside a frame header, inside a rate-limit event, inside a large frame),
each piece only after the client's next sync frame arrived, so Envoy reads the pieces separately (the client
sends a sync whenever it got bytes or 50 ms passed; coalesced pieces would weaken, not break, the test).

Proven: `codex.rate_limits` frames get the view's `plan_type` and `rate_limits` (other fields kept, new length
encoded); every other frame - text deltas, a text frame quoting "codex.rate_limits" in a string, a 70 KB
frame, binary, ping, a fragmented message, an RSV1 (compressed) frame, close - reaches the client byte for
byte; without the view header everything passes untouched; the internal header never reaches the client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pooler.envoy_config import Endpoint, GatewayConfig, render
from pooler.gateway.ratelimit_view import WS_VIEW_RESPONSE_HEADER
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, port_open, wait_until
from tests.support.websocket_frames import VIEW, VIEW_LIMITS, frame, frame_script, parse_frames

pytestmark = pytest.mark.integration
PATH = "/backend-api/codex/responses"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def pieces(stream: bytes, frames: list[bytes]) -> list[bytes]:
    """Cut points: inside the first frame's header, inside the first rate-limit payload, inside the big frame,
    inside the 16-bit length of the padded rate-limit frame."""
    starts = [sum(len(f) for f in frames[:i]) for i in range(len(frames))]
    cuts = sorted({1, 40, starts[3] + 5, starts[3] + 30_000, starts[9] + 3, starts[9] + 100, len(stream) - 1})
    out, last = [], 0
    for cut in cuts:
        out.append(stream[last:cut])
        last = cut
    out.append(stream[last:])
    return out


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(n)
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


async def run_exchange(port: int, upstream_port: int, view: str | None) -> tuple[dict[str, str], bytes, bytes]:
    """Returns (the 101 headers the client got, the bytes the upstream sent, the bytes the client received)."""
    frames, _ = frame_script()
    stream = b"".join(frames)
    parts = pieces(stream, frames)

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        # The frame view, as the upstream filter chain puts it on the 101 from the ext_proc's metadata.
        extra = f"{WS_VIEW_RESPONSE_HEADER}: {view}\r\n".encode() if view else b""
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n"
        )
        for i, part in enumerate(parts):
            if i:
                await read_frame(reader)  # the client's sync: Envoy has read the previous piece by now
            writer.write(part)
            await writer.drain()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", upstream_port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        writer.write(
            (
                f"GET {PATH} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode().split("\r\n")
        assert " 101 " in lines[0], head
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        received = b""
        deadline = time.monotonic() + 20
        syncs = 0
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.05)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                break
            if chunk:
                received += chunk
            if syncs < len(parts) - 1:
                writer.write(frame(b"sync", mask=True))
                await writer.drain()
                syncs += 1
            if received.endswith(frames[-1]):
                break
        writer.close()
        return headers, stream, received
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def envoy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    tmp = tmp_path_factory.mktemp("wsframes")
    port, upstream_port = free_port(), free_port()
    unused = Endpoint.unix(tmp / "unused.sock")
    config = GatewayConfig(
        listen=Endpoint.tcp("127.0.0.1", port),
        admin=Endpoint.tcp("127.0.0.1", free_port()),
        extproc=unused,
        accesslog=unused,
        local=unused,
        admin_app=Endpoint.tcp("127.0.0.1", free_port()),
        upstream_url=f"http://127.0.0.1:{upstream_port}",
        direct=True,
    )
    path: Path = tmp / "envoy.yaml"
    path.write_text(render(config))
    proc = ManagedProcess(
        "envoy",
        [
            str(VENV_BIN / "envoy"),
            "-c",
            str(path),
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--base-id",
            str(secrets.randbelow(1_000_000)),
        ],
        tmp / "envoy.log",
    ).start()
    try:
        wait_until(lambda: port_open(port) or not proc.alive(), timeout=20, what="envoy listener")
        assert proc.alive(), proc.log_text()[-3000:]
        yield port, upstream_port
    finally:
        proc.stop()


def test_rate_limit_frames_get_the_view_and_everything_else_passes_byte_for_byte(envoy: tuple[int, int]) -> None:
    port, upstream_port = envoy
    before = int(time.time())
    headers, _sent, received = asyncio.run(run_exchange(port, upstream_port, VIEW))
    after = int(time.time())
    assert WS_VIEW_RESPONSE_HEADER not in headers
    frames, replaced = frame_script()
    got = parse_frames(received)
    assert len(got) == len(frames)
    for (b0, payload, raw), original, is_event in zip(got, frames, replaced, strict=True):
        if not is_event:
            assert raw == original
            continue
        assert b0 == 0x81
        event = json.loads(payload)
        source = json.loads(parse_frames(original)[0][1])
        assert list(event) == list(source)  # same keys, same order: only two values were spliced
        assert event["plan_type"] == "pro"
        for slot in ("primary", "secondary"):
            want, have = VIEW_LIMITS[slot], event["rate_limits"][slot]
            assert {k: v for k, v in have.items() if k != "reset_after_seconds"} == {
                k: v for k, v in want.items() if k != "reset_after_seconds"
            }
            # refreshed per frame from reset_at, not the figure computed at upgrade time
            assert want["reset_at"] - after - 1 <= have["reset_after_seconds"] <= want["reset_at"] - before + 1
        assert event["rate_limits"]["allowed"] is True and event["rate_limits"]["limit_reached"] is False
        assert {k: v for k, v in event.items() if k not in ("plan_type", "rate_limits")} == {
            k: v for k, v in source.items() if k not in ("plan_type", "rate_limits")
        }


def test_without_the_view_every_frame_passes_untouched(envoy: tuple[int, int]) -> None:
    port, upstream_port = envoy
    headers, sent, received = asyncio.run(run_exchange(port, upstream_port, None))
    assert received == sent
    assert WS_VIEW_RESPONSE_HEADER not in headers
