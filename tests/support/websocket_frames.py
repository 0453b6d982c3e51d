"""Websocket frames for the pooled-view frame rewriter's tests (pooler/envoy_config/lua/ws_view.lua): the unit
tests run the script under LuaJIT, tests/integration/test_gateway_pooled_view_ws_frames.py in real Envoy; both
use this upstream frame script and view."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

VIEW_LIMITS = {
    "allowed": True,
    "limit_reached": False,
    "primary": {"used_percent": 40, "window_minutes": 300, "reset_after_seconds": 999, "reset_at": 4102444800},
    "secondary": {"used_percent": 25, "window_minutes": 10080, "reset_after_seconds": 999, "reset_at": 4102444900},
}
VIEW = "pro " + json.dumps(VIEW_LIMITS, separators=(",", ":"))
"""The value of the view header on the 101: the pool's plan_type, then its rate_limits as compact JSON."""


def frame(payload: bytes, opcode: int = 1, fin: bool = True, rsv1: bool = False, mask: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mask_bit | n])
    elif n < 65536:
        head = bytes([b0, mask_bit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mask_bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame_head(data: bytes, pos: int) -> tuple[int, int, int]:
    """The frame starting at `pos`: (first byte, payload length, header length without a mask key)."""
    b0, b1 = data[pos], data[pos + 1]
    n, head = b1 & 0x7F, 2
    if n == 126:
        n, head = struct.unpack(">H", data[pos + 2 : pos + 4])[0], 4
    elif n == 127:
        n, head = struct.unpack(">Q", data[pos + 2 : pos + 10])[0], 10
    return b0, n, head


def parse_frames(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(first byte, payload, raw frame bytes) of unmasked server frames."""
    out, pos = [], 0
    while pos < len(data):
        assert not data[pos + 1] & 0x80
        b0, n, head = frame_head(data, pos)
        out.append((b0, data[pos + head : pos + head + n], data[pos : pos + head + n]))
        pos += head + n
    return out


def rate_event(used: int, **extra: Any) -> dict[str, Any]:
    window = {"used_percent": used, "window_minutes": 300, "reset_after_seconds": 60, "reset_at": 1700000000}
    return {
        "type": "codex.rate_limits",
        "plan_type": "plus",
        "rate_limits": {"allowed": True, "limit_reached": False, "primary": window, "secondary": None},
        "credits": {"has_credits": True, "unlimited": False, "balance": "7"},
        **extra,
    }


def frame_script() -> tuple[list[bytes], list[bool]]:
    """The upstream's frames and, per frame, whether it is a rate-limit event the view replaces."""
    big = json.dumps({"type": "response.output_text.delta", "delta": "x" * 70_000}).encode()
    quoting = json.dumps({"type": "response.output_text.delta", "delta": 'say "codex.rate_limits" {['}).encode()
    padded = rate_event(90, code_review_rate_limits=None, note="p" * 200)  # > 125 bytes: 16-bit length
    frames = [
        (frame(json.dumps(rate_event(90)).encode()), True),
        (frame(json.dumps({"type": "response.created", "response": {"id": "r1"}}).encode()), False),
        (frame(quoting), False),
        (frame(big), False),
        (frame(b"\x00\x01binary codex.rate_limits", opcode=2), False),
        (frame(b"ping", opcode=9), False),
        (frame(b'{"type":"codex.rate', fin=False), False),  # fragmented message: left alone
        (frame(b'_limits"}', opcode=0), False),
        (frame(json.dumps(rate_event(91)).encode(), rsv1=True), False),  # "compressed": never touched
        (frame(json.dumps(padded).encode()), True),
        (frame(json.dumps({"type": "response.completed", "response": {"id": "r1"}}).encode()), False),
        (frame(struct.pack(">H", 1000), opcode=8), False),
    ]
    return [f for f, _ in frames], [r for _, r in frames]
