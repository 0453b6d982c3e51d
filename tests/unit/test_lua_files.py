"""The Envoy Lua files as Lua: every file and every rendered script compiles under LuaJIT, a script reads no global
but the standard library's and sets none but its Envoy entry point (a mistyped local would otherwise be a nil
global at run time, in Envoy only), and the substitution step that fills in the constants is strict."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

from pooler import gateway_contract as gc
from pooler.envoy_config import lua
from pooler.envoy_config.http_filters import build_http_filters
from pooler.envoy_config.upstream_filters import (
    DECISION_GUARD_FILTER,
    INSTALLATION_BODY_FILTER,
    UPSTREAM_ERRORS_FILTER,
    build_upstream_http_filters,
)
from tests.support.envoy_configs import sample_config
from tests.support.luajit import luajit

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(lua.SUBSTITUTIONS)
ENTRY_POINTS = {
    lua.REQUEST_SCAN_SCRIPT: "envoy_on_request",
    lua.WS_VIEW_SCRIPT: "envoy_on_response",
    lua.WS_USAGE_SCRIPT: "envoy_on_response",
    lua.UPSTREAM_ERRORS_SCRIPT: "envoy_on_response",
    lua.INSTALLATION_BODY_SCRIPT: "envoy_on_request",
    lua.DECISION_GUARD_SCRIPT: "envoy_on_request",
}
# The parts of the standard library the scripts may use (Envoy's LuaJIT opens them all; `io`, `require`, `load*`
# and `debug` have no business in a filter).
STANDARD_GLOBALS = {"string", "math", "table", "os", "tonumber", "tostring", "pairs", "ipairs", "unpack", "type"}
_GLOBAL_ACCESS = re.compile(r"\b(GGET|GSET)\b.*; \"(\w+)\"$")


def _bytecode_listing(source: str, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.lua"
    path.write_text(source)
    proc = subprocess.run([luajit(), "-bl", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{name}: {proc.stderr}"
    return proc.stdout


def test_the_package_holds_one_file_per_script_and_the_json_helpers() -> None:
    helpers = [lua.JSON_HELPERS_FILE, lua.WS_FRAMES_FILE, lua.ERROR_FIELDS_FILE]
    assert lua.lua_files() == sorted([*helpers, *(f"{script}.lua" for script in SCRIPTS)])
    assert sorted(ENTRY_POINTS) == SCRIPTS


@pytest.mark.parametrize("name", lua.lua_files())
def test_every_lua_file_compiles_on_its_own(name: str, tmp_path: Path) -> None:
    text = files(lua.__name__).joinpath(name).read_text()
    _bytecode_listing(text, tmp_path, name.removesuffix(".lua"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_rendered_script_compiles_and_touches_only_standard_globals(script: str, tmp_path: Path) -> None:
    listing = _bytecode_listing(lua.render_script(script), tmp_path, script)
    reads: set[str] = set()
    writes: set[str] = set()
    for line in listing.splitlines():
        if match := _GLOBAL_ACCESS.search(line):
            (reads if match.group(1) == "GGET" else writes).add(match.group(2))
    assert writes == {ENTRY_POINTS[script]}
    assert reads <= STANDARD_GLOBALS, reads - STANDARD_GLOBALS


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_config_carries_the_rendered_scripts_with_every_placeholder_filled(script: str, tmp_path: Path) -> None:
    sources = {
        name: code["inline_string"]
        for f in build_http_filters()
        if "source_codes" in f["typed_config"]
        for name, code in f["typed_config"]["source_codes"].items()
    }
    # The Codex clusters' upstream Lua filters have one script each, as their default source.
    upstream = {
        f["name"]: f["typed_config"]["default_source_code"]["inline_string"]
        for f in build_upstream_http_filters(sample_config(tmp_path))
        if "default_source_code" in f.get("typed_config", {})
    }
    sources[lua.UPSTREAM_ERRORS_SCRIPT] = upstream[UPSTREAM_ERRORS_FILTER]
    sources[lua.INSTALLATION_BODY_SCRIPT] = upstream[INSTALLATION_BODY_FILTER]
    # The guard sits only behind the ext_proc that fails open: the first-event hold's cluster.
    held = build_upstream_http_filters(sample_config(tmp_path), processor=gc.PROCESSOR_FIRST_EVENT)
    sources[lua.DECISION_GUARD_SCRIPT] = next(
        f["typed_config"]["default_source_code"]["inline_string"] for f in held if f["name"] == DECISION_GUARD_FILTER
    )
    assert sources[script] == lua.render_script(script)
    assert "${" not in sources[script]
    for value in lua.SUBSTITUTIONS[script].values():
        assert f'"{value}"' in sources[script]


def test_the_file_descriptions_are_not_rendered() -> None:
    """Each file starts with its description for readers; Envoy gets the code after it."""
    descriptions = [files(lua.__name__).joinpath(name).read_text().partition("\n\n")[0] for name in lua.lua_files()]
    for script in SCRIPTS:
        rendered = lua.render_script(script)
        assert rendered.startswith("\nlocal find, byte, sub = ")
        assert not [d for d in descriptions if d.splitlines()[0] in rendered]


def test_substitution_fills_each_placeholder_inside_its_literal() -> None:
    code = 'local a, b = "${A}", "${B}" .. "${A}"'
    assert lua.substitute(code, {"A": "x-pooler-a", "B": "pooler.b"}) == (
        'local a, b = "x-pooler-a", "pooler.b" .. "x-pooler-a"'
    )


@pytest.mark.parametrize(
    ("code", "values", "error"),
    [
        ('"${A}" .. "${B}"', {"A": "a"}, r"no value for the Lua placeholders \['B'\]"),
        ('"${}"', {}, r"no value for the Lua placeholders \[''\]"),
        ('"${A}"', {"A": "a", "C": "c"}, r"values for no Lua placeholder: \['C'\]"),
        ('"${A}"', {"A": 'a" .. os.exit() .. "'}, "would need escaping inside a Lua string literal"),
        ('"${A}"', {"A": "a\\"}, "would need escaping inside a Lua string literal"),
        ('"${A}"', {"A": ""}, "would need escaping inside a Lua string literal"),
    ],
)
def test_substitution_refuses_unknown_unused_and_unsafe_values(code: str, values: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        lua.substitute(code, values)


def test_a_file_without_its_description_block_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bare.lua").write_text("local x = 1\n\nlocal y = 2\n")
    monkeypatch.setattr(lua, "files", lambda _package: tmp_path)
    with pytest.raises(ValueError, match=r"bare\.lua: expected a leading comment block"):
        lua.read_code("bare.lua")


def test_lua_files_are_package_data() -> None:
    """A wheel (and the Docker image's install) must carry the .lua files next to the renderer."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "*.lua" in pyproject["tool"]["setuptools"]["package-data"]["*"]
