"""The JSON helpers (pooler/envoy_config/lua/json.lua) under LuaJIT, as the request scanner runs them: skipping
strings and values, walking the top-level members, decoding escapes. Positions are 1-based; an end is one past."""

from __future__ import annotations

import pytest

from pooler.envoy_config.lua import REQUEST_SCAN_LUA
from tests.support.luajit import lua_string, run_lua


def _call(function: str, s: bytes, *args: int) -> object:
    extra = "".join(f", {a}" for a in args)
    (value,) = run_lua(REQUEST_SCAN_LUA, f"emit({function}({lua_string(s)}{extra}))")
    return value


def members(s: bytes) -> tuple[object, list[tuple[object, object]]]:
    """each_member's verdict and the (raw key, value text) pairs it visited, in order."""
    driver = f"""
local s = {lua_string(s)}
local seen = {{}}
local ok = each_member(s, function(key, vs, ve)
  seen[#seen + 1] = key
  seen[#seen + 1] = sub(s, vs, ve - 1)
end)
emit(ok)
for _, v in ipairs(seen) do emit(v) end
"""
    ok, *flat = run_lua(REQUEST_SCAN_LUA, driver)
    return ok, list(zip(flat[::2], flat[1::2], strict=True))


@pytest.mark.parametrize(
    ("s", "start", "end"),
    [
        (b'"abc"', 1, 6),
        (b'xx"ab"yy', 3, 7),
        (b'""', 1, 3),
        (b'"a\\"b"', 1, 7),  # an escaped quote does not close
        (b'"a\\\\"', 1, 6),  # an escaped backslash: the quote after it closes
        (b'"a\\\\\\"b"', 1, 9),  # three backslashes: escaped backslash, then escaped quote
        (b'"abc', 1, None),  # unterminated
        (b'"a\\"', 1, None),
    ],
)
def test_skip_string(s: bytes, start: int, end: int | None) -> None:
    assert _call("skip_string", s, start) == end


@pytest.mark.parametrize(
    ("s", "end"),
    [
        (b"123,", 4),
        (b"-1.5e+10}", 9),
        (b"true ", 5),
        (b"null", 5),
        (b'"s" ', 4),
        (b'{"a": [1, "]", {"b": "}"}]}, "x"', 28),  # brackets inside strings do not count
        (b'{"a": "\\"}"}', 13),
        (b"[]", 3),
        (b"[[[[]]]]x", 9),
        (b'{"a": 1', None),  # truncated
        (b"[1, 2", None),
        (b'{"a": "x', None),
        (b":", None),  # not a value
        (b"", None),
    ],
)
def test_skip_value(s: bytes, end: int | None) -> None:
    assert _call("skip_value", s, 1) == end


def test_deep_nesting_is_walked_without_recursion() -> None:
    depth = 100_000
    s = b"[" * depth + b"]" * depth
    assert _call("skip_value", s, 1) == 2 * depth + 1
    assert _call("skip_value", s[:-1], 1) is None


@pytest.mark.parametrize(
    ("s", "visited"),
    [
        (
            b'{"a": 1, "b": "x", "c": [1, {"d": "]"}], "e": {"f": null}, "g": true}',
            [(b"a", b"1"), (b"b", b'"x"'), (b"c", b'[1, {"d": "]"}]'), (b"e", b'{"f": null}'), (b"g", b"true")],
        ),
        (b' \n\t{ "a" :\r\n -2 ,"b":2 } ', [(b"a", b"-2"), (b"b", b"2")]),
        (b"{}", []),
        (b"{ }", []),
        (b'{"mod\\u0065l": "x"}', [(b"mod\\u0065l", b'"x"')]),  # raw keys: escapes not decoded here
        (b'{"a\\"b": 1}', [(b'a\\"b', b"1")]),
        (b'{"a\\\\": 1}', [(b"a\\\\", b"1")]),
        (b'{"m": 1, "m": 2}', [(b"m", b"1"), (b"m", b"2")]),  # every member, in order
        (b'{"a": {"t": "}{\\"]["}, "b": 2}', [(b"a", b'{"t": "}{\\"]["}'), (b"b", b"2")]),
        (b'{"a": 1} trailing', [(b"a", b"1")]),  # the walk ends at the object's closing brace
    ],
)
def test_each_member_visits_every_top_level_member(s: bytes, visited: list[tuple[bytes, bytes]]) -> None:
    assert members(s) == (True, visited)


@pytest.mark.parametrize(
    "s",
    [
        b"",
        b"   ",
        b"[1]",
        b'"x"',
        b"null",
        b'{"a": 1',  # truncated at every kind of place
        b'{"a": "x',
        b'{"a":',
        b'{"a"',
        b'{"a',
        b"{",
        b'{"a": [1, 2',
        b'{"a": {"b": "c"',
        b'{"a" 1}',  # no colon
        b"{a: 1}",  # unquoted key
        b'{"a": }',  # no value
    ],
)
def test_each_member_refuses_what_is_not_a_json_object(s: bytes) -> None:
    assert members(s)[0] is False


def test_each_member_reaches_a_member_after_a_large_string_and_deep_nesting() -> None:
    nested = b"[" * 10_000 + b'"model"' + b"]" * 10_000
    s = b'{"input": "' + b'x\\" ' * 50_000 + b'", "deep": ' + nested + b', "model": "m"}'
    ok, visited = members(s)
    assert ok is True
    assert [key for key, _ in visited] == [b"input", b"deep", b"model"]
    assert visited[-1] == (b"model", b'"m"')


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"abc", b"abc"),
        (b"", b""),
        (b"mod\\u0065l", b"model"),
        (b"\\u006D\\u006f", b"mo"),  # hex digits in either case
        (b"\\\\u0041", b"\\u0041"),  # one pass: an escaped backslash does not start another escape
        (b'\\"\\\\\\/\\b\\f\\n\\r\\t', b'"\\/\b\f\n\r\t'),
        (b"\\u00e9", "é".encode()),
        (b"\\u20ac", "€".encode()),
        (b"\\u0000", b"\x00"),
        (b"a\\x", None),  # not a JSON escape
        (b"\\u12", None),
        (b"\\u00zz", None),
        (b"abc\\", None),  # a lone trailing backslash
    ],
)
def test_unescape(raw: bytes, text: bytes | None) -> None:
    assert _call("unescape", raw) == text
