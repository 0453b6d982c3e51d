"""The websocket token counter (pooler/envoy_config/lua/ws_usage.lua) under LuaJIT with a stub Envoy handle: the
usage of every `response.completed` event is summed into the pooler.usage metadata whatever the chunking, other
events (even ones mentioning the words) count nothing, and no byte the client receives is changed."""

from __future__ import annotations

import json
import random
from typing import Any, cast

from pooler import gateway_contract as gc
from pooler.envoy_config.lua import WS_USAGE_LUA
from tests.support.luajit import LuaValue, lua_string, lua_strings, run_lua
from tests.support.websocket_frames import frame

UPGRADE = {":status": "101"}

DRIVER = """
local function run(headers, chunks)
  local handle, received, metadata = response_handle(headers, chunks)
  envoy_on_response(handle)
  return received(), metadata
end
"""


def _headers(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()) + "}"


def counted(chunks: list[bytes], headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, LuaValue]]:
    """What the client receives and the pooler.usage metadata the filter left."""
    driver = f"local out, md = run({_headers(UPGRADE if headers is None else headers)}, {lua_strings(chunks)})\n"
    driver += f'emit(out, md["{gc.NS_USAGE}"] or {{}})'
    out, usage = run_lua(WS_USAGE_LUA, DRIVER + driver)
    assert isinstance(out, bytes) and isinstance(usage, dict)
    return out, usage


def completed(input_tokens: int, cached: int, output: int, reasoning: int, text: str = "hi") -> bytes:
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output,
    }
    output_items = [{"type": "message", "content": [{"type": "output_text", "text": text}]}]
    response = {"id": "resp_1", "status": "completed", "output": output_items, "usage": usage}
    event = {"type": "response.completed", "sequence_number": 9, "response": response}
    return json.dumps(event, separators=(",", ":")).encode()


def event(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def conversation() -> list[bytes]:
    """Two turns, with the events around them a real connection carries."""
    return [
        frame(event("codex.rate_limits", rate_limits={})),
        frame(event("response.created", response={"id": "resp_1", "usage": None})),
        frame(event("response.output_text.delta", delta='say "response.completed" and "usage":{"input_tokens":9}')),
        frame(completed(1000, 900, 50, 10)),
        frame(b"", opcode=9),  # a ping between turns
        frame(event("response.created", response={"id": "resp_2"})),
        frame(completed(1200, 1100, 70, 0, text="x" * 70000)),  # a 64-bit length frame
    ]


EXPECTED = {
    "input_tokens": 2200,
    "cached_tokens": 2000,
    "output_tokens": 120,
    "reasoning_tokens": 10,
    "total_tokens": 2320,
}


def test_the_usage_of_every_completed_turn_is_summed_and_no_byte_changes() -> None:
    stream = b"".join(conversation())
    out, usage = counted([stream])
    assert out == stream
    assert usage == EXPECTED


def cut_at_random(stream: bytes, rng: random.Random, most: int) -> list[bytes]:
    """`stream` in 2 to most+1 chunks cut at random places."""
    cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, most)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def test_the_same_totals_whatever_the_chunking() -> None:
    stream = b"".join(conversation())
    rng = random.Random(11)
    for _ in range(40):
        chunks = cut_at_random(stream, rng, 12)
        out, usage = counted(chunks)
        assert out == stream
        assert usage == EXPECTED, [len(c) for c in chunks]
    small = b"".join(conversation()[:4])
    out, usage = counted([small[i : i + 1] for i in range(len(small))])  # one byte at a time
    assert usage == {
        "input_tokens": 1000,
        "cached_tokens": 900,
        "output_tokens": 50,
        "reasoning_tokens": 10,
        "total_tokens": 1050,
    }


def test_a_fragmented_completed_event_with_a_control_frame_inside_counts_once() -> None:
    payload = completed(300, 100, 20, 0)
    stream = frame(payload[:50], fin=False) + frame(b"p", opcode=9) + frame(payload[50:], opcode=0)
    _, usage = counted([stream])
    assert usage["input_tokens"] == 300 and usage["cached_tokens"] == 100


def test_nothing_is_counted_when_there_is_nothing_to_count() -> None:
    # A completed event without usage, a failed turn, a binary frame, a compressed and a masked frame.
    no_usage = json.dumps({"type": "response.completed", "response": {"usage": None}}).encode()
    frames = [
        frame(no_usage),
        frame(event("response.failed", response={"usage": {"input_tokens": 5}})),
        frame(completed(1, 1, 1, 1), opcode=2),
        frame(completed(1, 1, 1, 1), rsv1=True),
        frame(completed(1, 1, 1, 1), mask=True),
    ]
    assert counted([b"".join(frames)])[1] == {}
    # Not an upgrade, or one that negotiated compression: not read at all.
    assert counted([frame(completed(1, 1, 1, 1))], {":status": "200"})[1] == {}
    compressed = {":status": "101", "sec-websocket-extensions": "permessage-deflate"}
    assert counted([frame(completed(1, 1, 1, 1))], compressed)[1] == {}


def error_frame(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """The upstream's websocket error frame, as the Codex backend sends it."""
    return json.dumps({"type": "error", "status": status, "error": error, "headers": headers or {}}).encode()


def test_an_error_frame_is_summarised_like_an_error_answer_and_no_byte_changes() -> None:
    headers = {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-reset-at": "1767225600",
        "x-codex-active-limit": "codex",
        "retry-after": "120",
        "set-cookie": "a=b",  # not a limit header: never logged
        "x-codex-note": "free text here",  # not a safe token: never logged
    }
    error = {"type": "usage_limit_reached", "message": "You've hit your limit, friend.", "resets_at": 1767225600}
    stream = b"".join([*conversation()[:4], frame(error_frame(429, error, headers))])
    rng = random.Random(5)
    for _ in range(20):
        out, usage = counted(cut_at_random(stream, rng, 8))
        assert out == stream
        assert usage[gc.USAGE_WS_ERROR] == b"status=429 type=usage_limit_reached resets_at=1767225600"
        logged = bytes(cast(bytes, usage[gc.USAGE_WS_ERROR_HEADERS])).decode().split(" ")
        assert sorted(logged) == [
            "retry-after=120",
            "x-codex-active-limit=codex",
            "x-codex-primary-reset-at=1767225600",
            "x-codex-primary-used-percent=100",
        ]
        assert usage["input_tokens"] == 1000  # the turn before it still counts


def test_a_short_error_frame_and_the_last_of_several_are_read() -> None:
    short = frame(error_frame(400, {"code": "previous_response_not_found"}))
    assert len(short) < 128
    _, usage = counted([short])
    assert usage[gc.USAGE_WS_ERROR] == b"status=400 code=previous_response_not_found"
    limited = frame(error_frame(429, {"type": "rate_limit_exceeded", "message": "slow down"}))
    _, usage = counted([short + limited])
    assert usage[gc.USAGE_WS_ERROR] == b"status=429 type=rate_limit_exceeded"


def test_what_only_looks_like_an_error_frame_is_not_one() -> None:
    frames = [
        frame(event("response.output_text.delta", delta='{"type":"error","status":429}')),  # quoted text
        frame(json.dumps({"type": "error", "error": {"code": "x"}}).encode()),  # no status
        frame(error_frame(429, {"code": "usage_limit_reached"}), mask=True),  # client -> server
    ]
    assert gc.USAGE_WS_ERROR not in counted([b"".join(frames)])[1]
