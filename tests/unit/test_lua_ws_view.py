"""The websocket pooled-view frame rewriter (pooler/envoy_config/lua/ws_view.lua) under LuaJIT with a stub Envoy
handle: the frames of tests/integration/test_gateway_pooled_view_ws_frames.py, the same bytes out whatever the
chunking (every cut point, one-byte chunks), the length encodings, and when the view is not applied at all."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pooler.envoy_config.lua import WS_VIEW_LUA
from pooler.gateway.ratelimit_view import WS_VIEW_RESPONSE_HEADER
from tests.support.luajit import LuaValue, lua_string, lua_strings, run_lua
from tests.support.websocket_frames import VIEW, VIEW_LIMITS, frame, frame_script, parse_frames, rate_event

NOW = 4102444000  # the stub clock: before both of the view's resets
UPGRADE = {":status": "101", WS_VIEW_RESPONSE_HEADER: VIEW}

# `run` gives what the client receives when the upstream's bytes arrive as `chunks`; `check` runs every list of
# cut points over `stream` and emits the index of each whose output is not `expected`, then how many ran.
DRIVER = f"""
os.time = function() return {NOW} end
local function run(headers, chunks)
  local handle, received = response_handle(headers, chunks)
  envoy_on_response(handle)
  return received()
end
local function check(headers, stream, expected, cut_lists)
  for index, cuts in ipairs(cut_lists) do
    local chunks, last = {{}}, 0
    for _, cut in ipairs(cuts) do
      chunks[#chunks + 1] = string.sub(stream, last + 1, cut)
      last = cut
    end
    chunks[#chunks + 1] = string.sub(stream, last + 1)
    local copy = {{}}
    for k, v in pairs(headers) do copy[k] = v end
    if run(copy, chunks) ~= expected then emit(index) end
  end
  emit(#cut_lists)
end
"""


def _headers(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()) + "}"


def received(chunks: list[bytes], headers: dict[str, str] | None = None) -> tuple[dict[str, LuaValue], bytes]:
    """The response headers after the filter and the bytes the client receives."""
    driver = f"""
local headers = {_headers(UPGRADE if headers is None else headers)}
local out = run(headers, {lua_strings(chunks)})
emit(headers, out)
"""
    after, out = run_lua(WS_VIEW_LUA, DRIVER + driver)
    assert isinstance(after, dict) and isinstance(out, bytes)
    return after, out


def fresh_limits(now: int = NOW) -> bytes:
    """The view's rate_limits as a frame carries them: reset_after_seconds counted from `now`."""
    limits: dict[str, Any] = json.loads(json.dumps(VIEW_LIMITS))
    for slot in ("primary", "secondary"):
        limits[slot]["reset_after_seconds"] = max(0, limits[slot]["reset_at"] - now)
    return json.dumps(limits, separators=(",", ":")).encode()


def viewed(payload: bytes, now: int = NOW) -> bytes:
    """A rate-limit event's payload with the view's two values spliced in, everything else as it was."""
    event = json.loads(payload)
    marker = "__rate_limits__"
    spliced = {k: ("pro" if k == "plan_type" else marker if k == "rate_limits" else v) for k, v in event.items()}
    return json.dumps(spliced).encode().replace(f'"{marker}"'.encode(), fresh_limits(now))


def expected_stream(frames: list[bytes], replaced: list[bool]) -> bytes:
    return b"".join(frame(viewed(parse_frames(f)[0][1])) if r else f for f, r in zip(frames, replaced, strict=True))


def test_rate_limit_frames_get_the_view_and_everything_else_passes_byte_for_byte() -> None:
    frames, replaced = frame_script()
    headers, out = received([b"".join(frames)])
    assert headers == {":status": b"101"}  # the internal view header never reaches the client
    assert out == expected_stream(frames, replaced)
    got = parse_frames(out)
    assert got[9][2][:2] == bytes([0x81, 126])  # the padded event still needs the 16-bit length


def _cuts_fail(stream: bytes, expected: bytes, cut_lists: list[list[int]]) -> list[list[int]]:
    """The lists of cut points (each chunking the stream at those offsets) whose output is not `expected`."""
    tables = ", ".join("{" + ", ".join(map(str, cuts)) + "}" for cuts in cut_lists)
    driver = f"check({_headers(UPGRADE)}, {lua_string(stream)}, {lua_string(expected)}, {{{tables}}})"
    *failed, ran = run_lua(WS_VIEW_LUA, DRIVER + driver)
    assert ran == len(cut_lists)
    return [cut_lists[i - 1] for i in failed if isinstance(i, int)]


def _small_script() -> tuple[list[bytes], list[bool]]:
    """The frame script without its 70 KB frame, so that every cut point can be tried."""
    frames, replaced = frame_script()
    return [f for f in frames if len(f) < 65536], [r for f, r in zip(frames, replaced, strict=True) if len(f) < 65536]


def test_the_same_bytes_whatever_the_chunking() -> None:
    frames, replaced = _small_script()
    stream, expected = b"".join(frames), expected_stream(frames, replaced)
    every_cut = [[cut] for cut in range(1, len(stream))]
    rng = random.Random(7)
    three_pieces = [sorted(rng.sample(range(1, len(stream)), 2)) for _ in range(300)]
    one_byte_chunks = [list(range(1, len(stream)))]
    assert _cuts_fail(stream, expected, every_cut + three_pieces + one_byte_chunks) == []


def test_a_large_frame_split_anywhere_near_its_edges_flows_through() -> None:
    frames, replaced = frame_script()
    stream, expected = b"".join(frames), expected_stream(frames, replaced)
    starts = [sum(len(f) for f in frames[:i]) for i in range(1, len(frames))]
    near_edges = sorted({c for s in starts for c in range(s - 12, s + 13) if 0 < c < len(stream)})
    cut_lists = [[c] for c in near_edges] + [[c] for c in range(1, len(stream), 997)]
    cut_lists.append(sorted({c for s in starts for c in (s - 1, s + 1, s + 3) if 0 < c < len(stream)}))
    assert _cuts_fail(stream, expected, cut_lists) == []


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_encodes_every_length_form(length: int) -> None:
    (out,) = run_lua(WS_VIEW_LUA, f'emit(text_frame(string.rep("a", {length})))')
    assert out == frame(b"a" * length)


def _event(**fields: Any) -> bytes:
    return frame(json.dumps(fields).encode())


LIMITS = rate_event(1)["rate_limits"]


@pytest.mark.parametrize(
    ("original", "want"),
    [
        # The event's type may come after the values it names.
        (
            _event(plan_type="plus", rate_limits=LIMITS, type="codex.rate_limits"),
            frame(b'{"plan_type": "pro", "rate_limits": ' + fresh_limits() + b', "type": "codex.rate_limits"}'),
        ),
        # Without a plan_type only the rate_limits are replaced.
        (
            _event(type="codex.rate_limits", rate_limits=None),
            frame(b'{"type": "codex.rate_limits", "rate_limits": ' + fresh_limits() + b"}"),
        ),
    ],
)
def test_an_event_gets_whichever_of_the_two_values_it_has(original: bytes, want: bytes) -> None:
    assert received([original])[1] == want


@pytest.mark.parametrize(
    "original",
    [
        _event(type="codex.rate_limits", credits=None),  # neither value: nothing to replace
        _event(event={"type": "codex.rate_limits"}, rate_limits=LIMITS),  # the type only nested
        _event(type="response.output_text.delta", delta="codex.rate_limits", rate_limits=LIMITS),
        frame(b'{"type": "codex.rate_limits", "rate_limits": {"primary": '),  # not a whole JSON object
        frame(b'{"type": "codex.rate_limits", "rate_limits": null}', mask=True),  # masked: not a server frame
        frame(json.dumps({**rate_event(5), "note": "n" * 70_000}).encode()),  # above 64 KiB: never read
    ],
)
def test_frames_that_are_not_a_readable_rate_limit_event_pass_untouched(original: bytes) -> None:
    assert received([original])[1] == original


def test_reset_after_seconds_never_goes_negative() -> None:
    payload = json.dumps(rate_event(3)).encode()
    later = 4102444850  # after the primary window's reset, before the secondary's
    driver = DRIVER.replace(f"return {NOW} end", f"return {later} end") + (
        f"emit(run({_headers(UPGRADE)}, {{{lua_string(frame(payload))}}}))"
    )
    (out,) = run_lua(WS_VIEW_LUA, driver)
    assert out == frame(viewed(payload, now=later))
    assert b'"reset_after_seconds":0,"reset_at":4102444800' in out
    assert b'"reset_after_seconds":50,"reset_at":4102444900' in out


@pytest.mark.parametrize(
    ("headers", "after"),
    [
        ({":status": "101"}, {":status": b"101"}),  # no view: nothing to do
        ({":status": "200", WS_VIEW_RESPONSE_HEADER: VIEW}, {":status": b"200"}),  # not an upgrade
        (  # an extension was negotiated anyway: frames may be compressed
            {":status": "101", "sec-websocket-extensions": "permessage-deflate", WS_VIEW_RESPONSE_HEADER: VIEW},
            {":status": b"101", "sec-websocket-extensions": b"permessage-deflate"},
        ),
        ({":status": "101", WS_VIEW_RESPONSE_HEADER: "pro"}, {":status": b"101"}),  # malformed views
        ({":status": "101", WS_VIEW_RESPONSE_HEADER: "pro {}"}, {":status": b"101"}),
        ({":status": "101", WS_VIEW_RESPONSE_HEADER: "pro plus " + VIEW[4:]}, {":status": b"101"}),
        ({":status": "101", WS_VIEW_RESPONSE_HEADER: 'p"o ' + VIEW[4:]}, {":status": b"101"}),
    ],
)
def test_without_an_applicable_view_every_byte_passes_and_the_view_header_is_dropped(
    headers: dict[str, str], after: dict[str, bytes]
) -> None:
    frames, _ = _small_script()
    stream = b"".join(frames)
    got_headers, out = received([stream[:40], stream[40:]], headers=headers)
    assert got_headers == after
    assert out == stream
