"""The request scanner (pooler/envoy_config/lua/request_scan.lua) under LuaJIT with a stub Envoy handle: what it
writes into the request metadata namespace for the bodies tests/integration/test_gateway_body_scan.py and
test_gateway_client_answers.py send through the real Envoy, and the edges that are cheaper to pin here."""

from __future__ import annotations

import json

import pytest

from pooler import gateway_contract as gc
from pooler.envoy_config.lua import REQUEST_SCAN_LUA
from tests.support.luajit import LuaValue, lua_string, run_lua
from tests.support.simulator import turn_body

SCANNED = {gc.REQUEST_SCANNED: b"1"}


def scan(
    body: bytes | None,
    method: str = "POST",
    content_type: str | None = "application/json",
    encoding: str | None = None,
) -> dict[str, LuaValue]:
    """The request namespace after the scanner ran on this request."""
    headers = {":method": method, "content-type": content_type, "content-encoding": encoding}
    fields = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items() if v is not None)
    driver = f"""
local handle, metadata = request_handle({{{fields}}}, {"nil" if body is None else lua_string(body)})
envoy_on_request(handle)
emit(metadata)
"""
    (metadata,) = run_lua(REQUEST_SCAN_LUA, driver)
    assert isinstance(metadata, dict) and set(metadata) == {gc.NS_REQUEST}, metadata
    namespace = metadata[gc.NS_REQUEST]
    assert isinstance(namespace, dict)
    return namespace


def _body(members: str, prompt: str = "hello") -> bytes:
    """A Codex turn body with raw top-level JSON `members` written last, after the input (as in the integration
    test), so repeated or escaped keys that a dict cannot express can be sent."""
    fields = {k: v for k, v in turn_body(prompt).items() if k != "model"}
    return (json.dumps(fields)[:-1] + ", " + members + "}").encode()


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (_body('"model": "gpt-5-pro"'), b"gpt-5-pro"),
        (_body('"model": "gpt-5.1-codex", "model": "gpt-5-pro"'), b"gpt-5-pro"),  # the last wins, as upstream
        (_body('"model": "gpt-5.1-codex", "mod\\u0065l": "gpt-5-pro"'), b"gpt-5-pro"),  # key spelled with \u
        (_body('"metadata": {"model": "gpt-5.1-codex"}, "model": "gpt-5-pro"'), b"gpt-5-pro"),  # nested: ignored
        (_body('"model": "gpt-5-pro"', prompt="x" * 200_000), b"gpt-5-pro"),  # after a 200 KB input
        # Other model names only inside strings and behind an escaped backslash (`mod\\u0065l` is not `model`).
        (
            _body(
                '"model": "gpt-5.1-codex", "mod\\\\u0065l": "gpt-5-pro"',
                prompt='Compare {"model": "gpt-5-pro"} with the \\"model\\" field',
            ),
            b"gpt-5.1-codex",
        ),
        (_body('"model": "gpt\\u002d5"'), b"gpt-5"),  # values are decoded too
    ],
)
def test_the_top_level_model_however_the_body_writes_it(body: bytes, model: bytes) -> None:
    assert scan(body) == {**SCANNED, gc.REQUEST_MODEL: model}


@pytest.mark.parametrize(
    "members",
    [
        '"model": "gpt-5-pro", "model": 5',  # the last is not a string: no model, not the earlier one
        '"model": "gpt-5-pro", "model": null',
        '"model": "gpt\\x"',  # not a JSON escape
        '"metadata": {"model": "gpt-5-pro"}',  # only nested
    ],
)
def test_no_model_when_the_last_top_level_model_is_not_a_readable_string(members: str) -> None:
    assert scan(_body(members)) == SCANNED


def test_values_are_printable_ascii_of_at_most_256_bytes() -> None:
    assert scan(b'{"model": "gpt-\\u00e9\\t"}')[gc.REQUEST_MODEL] == b"gpt-???"  # two UTF-8 bytes, a tab
    assert scan(b'{"model": "' + b"m" * 300 + b'"}')[gc.REQUEST_MODEL] == b"m" * 256


def test_prompt_cache_key_beside_the_model() -> None:
    body = json.dumps(turn_body("hi", prompt_cache_key="conversation-1")).encode()
    assert scan(body) == {**SCANNED, gc.REQUEST_MODEL: b"gpt-5.1-codex", gc.REQUEST_PROMPT_CACHE_KEY: b"conversation-1"}


def test_file_ids_anywhere_but_never_inside_strings() -> None:
    body = {
        **turn_body('quoting {"file_id": "file-quoted"}'),  # in the JSON text: {\"file_id\": \"file-quoted\"}
        "attachments": [{"type": "input_file", "file_id": "file-abc"}, {"file_id": "file_2"}],
    }
    raw = json.dumps(body).replace('"file_id": "file_2"', '"file_id" :  "file_2"').encode()
    assert scan(raw)[gc.REQUEST_FILE_IDS] == b"file-abc,file_2"
    assert gc.REQUEST_FILE_IDS not in scan(json.dumps(turn_body("no files")).encode())


def test_at_most_16_file_ids() -> None:
    body = json.dumps({"model": "m", "files": [{"file_id": f"file-{n}"} for n in range(20)]}).encode()
    assert scan(body)[gc.REQUEST_FILE_IDS] == ",".join(f"file-{n}" for n in range(16)).encode()


@pytest.mark.parametrize(
    "body",
    [b'{"model": "gpt-5-pro", "input": "trunc', b"[1, 2]", b"not json", b'{"model": "m",}', b'"model"'],
)
@pytest.mark.parametrize("encoding", [None, "identity"])
def test_an_uncompressed_body_that_is_not_a_json_object_is_marked_and_nothing_else_set(
    body: bytes, encoding: str | None
) -> None:
    assert scan(body, encoding=encoding) == {**SCANNED, gc.REQUEST_INVALID_JSON: b"1"}


def test_a_compressed_body_is_never_called_invalid() -> None:
    """Codex sends `content-encoding: zstd`: the scanner cannot read those bytes, and must not call them invalid."""
    assert scan(b"\x28\xb5\x2f\xfd\x00binary", encoding="zstd") == SCANNED


@pytest.mark.parametrize(
    ("method", "content_type", "body"),
    [
        ("GET", "application/json", b'{"model": "m"}'),
        ("POST", "text/plain", b'{"model": "m"}'),
        ("POST", "multipart/form-data; boundary=x", b"--x"),
        ("POST", None, b'{"model": "m"}'),
        ("POST", "application/json", None),  # no body
    ],
)
def test_only_json_post_bodies_are_read_but_every_request_is_marked_scanned(
    method: str, content_type: str | None, body: bytes | None
) -> None:
    assert scan(body, method=method, content_type=content_type) == SCANNED


def test_json_content_types_beyond_application_json() -> None:
    assert scan(b'{"model": "m"}', content_type="application/vnd.api+json; charset=utf-8") == {
        **SCANNED,
        gc.REQUEST_MODEL: b"m",
    }
