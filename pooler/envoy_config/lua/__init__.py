"""The Lua sources Envoy runs, kept as real Lua files beside this module (package data, read with
importlib.resources) so that they can be parsed, linted and unit-tested as Lua (tests/unit/test_lua_*.py).

One file per script (`request_scan.lua`: the request body scanner; `ws_view.lua`: the websocket pooled-view frame
rewriter; `ws_usage.lua`: the websocket token counter; `upstream_errors.lua`: the upstream filter that reads
non-2xx answers; `installation_body.lua`: the upstream filter that gives a body's installation id the account's;
`decision_guard.lua`: the upstream filter that refuses an attempt the ext_proc did not decide),
its name being the script's name in the filter's `source_codes` and in the routes'
`LuaPerRoute`, plus `json.lua`, the JSON helpers every script starts with, `ws_frames.lua`, the websocket
frame helpers of the two websocket scripts, and `error_fields.lua`, the error-answer reading that the upstream
error reader and the websocket `error` frames share. A script's source, as rendered into the config, is built in two
explicit steps:

1. Each file's code, without its leading comment block (the file's description, for readers: everything up to
   the first blank line), is joined in order: `json.lua`, the script's helpers (`HELPERS`), then the script,
   each part preceded by a newline.
2. Every `${NAME}` in the code is replaced by the script's value for NAME (names are those of the Python
   constants: header names and metadata namespaces shared with the ext_proc). Placeholders only ever sit inside
   Lua string literals (`"${NS_REQUEST}"`), so a file is valid Lua before the step too, and values are limited to
   characters that need no escaping in a Lua string. An unknown placeholder or an unused value is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.resources import files

from pooler import gateway_contract as gc
from pooler.gateway.ratelimit_view import WS_VIEW_RESPONSE_HEADER

JSON_HELPERS_FILE = "json.lua"
WS_FRAMES_FILE = "ws_frames.lua"
ERROR_FIELDS_FILE = "error_fields.lua"
REQUEST_SCAN_SCRIPT = "request_scan"
WS_VIEW_SCRIPT = "ws_view"
WS_USAGE_SCRIPT = "ws_usage"
UPSTREAM_ERRORS_SCRIPT = "upstream_errors"
INSTALLATION_BODY_SCRIPT = "installation_body"
DECISION_GUARD_SCRIPT = "decision_guard"

_PLACEHOLDER = re.compile(r"\$\{(\w*)\}")
_LITERAL_SAFE = re.compile(r"[\w.:-]+")

SUBSTITUTIONS: dict[str, dict[str, str]] = {
    REQUEST_SCAN_SCRIPT: {
        name: getattr(gc, name)
        for name in (
            "NS_REQUEST",
            "REQUEST_MODEL",
            "REQUEST_PROMPT_CACHE_KEY",
            "REQUEST_FILE_IDS",
            "REQUEST_SCANNED",
            "REQUEST_INVALID_JSON",
            "REQUEST_SEALED_STATE",
        )
    },
    WS_VIEW_SCRIPT: {"WS_VIEW_RESPONSE_HEADER": WS_VIEW_RESPONSE_HEADER},
    WS_USAGE_SCRIPT: {name: getattr(gc, name) for name in ("NS_USAGE", "USAGE_WS_ERROR", "USAGE_WS_ERROR_HEADERS")},
    UPSTREAM_ERRORS_SCRIPT: {
        name: getattr(gc, name)
        for name in ("UPSTREAM_ERROR_HEADER", "ACTIVE_LIMIT_HEADER", "NS_REQUEST", "REQUEST_MODEL")
    },
    INSTALLATION_BODY_SCRIPT: {name: getattr(gc, name) for name in ("NS_ROUTING", "ROUTING_ACCOUNT_INSTALLATION")},
    DECISION_GUARD_SCRIPT: {"DECIDED_HEADER": gc.DECIDED_HEADER},
}
"""Per script, the value of each `${NAME}` in its code."""
HELPERS: dict[str, tuple[str, ...]] = {
    WS_VIEW_SCRIPT: (WS_FRAMES_FILE,),
    WS_USAGE_SCRIPT: (WS_FRAMES_FILE, ERROR_FIELDS_FILE),
    UPSTREAM_ERRORS_SCRIPT: (ERROR_FIELDS_FILE,),
}
"""Per script, the helper files joined after json.lua and before it."""


def lua_files() -> list[str]:
    """The names of the package's .lua files."""
    return sorted(entry.name for entry in files(__name__).iterdir() if entry.name.endswith(".lua"))


def read_code(file: str) -> str:
    """One .lua file without its leading comment block (the lines starting `--` before the first blank line)."""
    text = files(__name__).joinpath(file).read_text(encoding="utf-8")
    head, blank, code = text.partition("\n\n")
    if not blank or any(not line.startswith("--") for line in head.splitlines()):
        raise ValueError(f"{file}: expected a leading comment block, then a blank line, then the code")
    return code


def substitute(code: str, values: Mapping[str, str]) -> str:
    """`code` with each `${NAME}` replaced by values[NAME]; every placeholder must be known and every value used."""
    for name, value in values.items():
        if _LITERAL_SAFE.fullmatch(value) is None:
            raise ValueError(f"${{{name}}}: {value!r} would need escaping inside a Lua string literal")
    used = set(_PLACEHOLDER.findall(code))
    if unknown := sorted(used - values.keys()):
        raise ValueError(f"no value for the Lua placeholders {unknown}")
    if unused := sorted(values.keys() - used):
        raise ValueError(f"values for no Lua placeholder: {unused}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], code)


def render_script(script: str) -> str:
    """The source Envoy runs for `script` (the two steps of the module docstring)."""
    helpers = (JSON_HELPERS_FILE, *HELPERS.get(script, ()))
    parts = (*(read_code(file) for file in helpers), read_code(f"{script}.lua"))
    return substitute("".join("\n" + part for part in parts), SUBSTITUTIONS[script])


REQUEST_SCAN_LUA = render_script(REQUEST_SCAN_SCRIPT)
WS_VIEW_LUA = render_script(WS_VIEW_SCRIPT)
WS_USAGE_LUA = render_script(WS_USAGE_SCRIPT)
UPSTREAM_ERRORS_LUA = render_script(UPSTREAM_ERRORS_SCRIPT)
INSTALLATION_BODY_LUA = render_script(INSTALLATION_BODY_SCRIPT)
DECISION_GUARD_LUA = render_script(DECISION_GUARD_SCRIPT)
