"""Running the pooler's Envoy Lua scripts under LuaJIT, the Lua Envoy embeds, in unit tests.

A test program is one chunk: tests/support/envoy_stubs.lua (stand-ins for Envoy's handle objects, and `emit`),
the script exactly as rendered into the Envoy config, then the test's driver code, which can call the script's
local functions and report results with `emit(...)`. LuaJIT is a test dependency (scripts/system-deps.sh, run
by `make test`, installs it): when it is missing the tests fail, they never skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TypeAlias

import pytest

LuaValue: TypeAlias = "bool | int | bytes | dict[str, LuaValue] | None"

STUBS = Path(__file__).with_name("envoy_stubs.lua")
_PRINTABLE = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\")}


def luajit() -> str:
    """The luajit executable; fails the test (never skips) without it."""
    path = shutil.which("luajit")
    if path is None:
        pytest.fail(
            "luajit is missing: the Envoy Lua scripts are tested under LuaJIT. Install Debian's 'luajit' package "
            "(`bash scripts/system-deps.sh` does, and `make test` runs it).",
            pytrace=False,
        )
    return path


def lua_string(data: bytes | str) -> str:
    """A Lua string literal of exactly these bytes (str: its UTF-8); three-digit decimal escapes for anything
    but printable ASCII, so a digit after an escape never joins it."""
    raw = data.encode() if isinstance(data, str) else data
    return '"' + "".join(chr(b) if b in _PRINTABLE else f"\\{b:03d}" for b in raw) + '"'


def lua_strings(items: list[bytes] | list[str]) -> str:
    """A Lua array of string literals."""
    return "{" + ", ".join(lua_string(item) for item in items) + "}"


def run_lua(script_source: str, driver: str) -> list[LuaValue]:
    """Runs the stubs, `script_source` and `driver` as one chunk; returns the values the driver emitted."""
    program = STUBS.read_text() + script_source + "\n" + driver + "\n"
    proc = subprocess.run([luajit(), "-"], input=program.encode(), capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    values, end = _parse(proc.stdout, 0, None)
    assert end == len(proc.stdout)
    return values


def _parse(out: bytes, pos: int, count: int | None) -> tuple[list[LuaValue], int]:
    """Decodes `count` emitted records from `out` at `pos` (all of them when None), see envoy_stubs.lua."""
    values: list[LuaValue] = []
    while pos < len(out) and (count is None or len(values) < count):
        kind = out[pos : pos + 1]
        if kind == b"s":
            colon = out.index(b":", pos)
            length = int(out[pos + 1 : colon])
            values.append(out[colon + 1 : colon + 1 + length])
            pos = colon + 1 + length + 1
            continue
        newline = out.index(b"\n", pos)
        text = out[pos + 1 : newline]
        pos = newline + 1
        if kind == b"n":
            values.append(None)
        elif kind in (b"t", b"f"):
            values.append(kind == b"t")
        elif kind == b"i":
            values.append(int(text))
        elif kind == b"m":
            pairs, pos = _parse(out, pos, 2 * int(text))
            keys = [key.decode() for key in pairs[::2] if isinstance(key, bytes)]
            assert len(keys) * 2 == len(pairs), f"a table with keys that are not strings: {pairs!r}"
            values.append(dict(zip(keys, pairs[1::2], strict=True)))
        else:
            raise AssertionError(f"unexpected output from the Lua driver at byte {pos}: {out[pos - 1 : pos + 40]!r}")
    return values, pos
