"""The body's installation id (pooler/envoy_config/lua/installation_body.lua) under LuaJIT with a stub Envoy
handle: a Codex body's client installation id becomes the attempt's account's wherever the body repeats it (the
`x-codex-installation-id` member and the one inside the turn-metadata string), and anything else stays byte for
byte as it was."""

from __future__ import annotations

import json
from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.lua import INSTALLATION_BODY_LUA
from tests.support.luajit import lua_string, run_lua

CLIENT = "7ae53474-1197-4a88-a8d5-dac9d5c989ef"
ACCOUNT = "0b7c2f5e-9a41-4c3d-8e2f-5a6b7c8d9e0f"
JSON_HEADERS = {"content-type": "application/json"}


def codex_body(installation: str = CLIENT, **extra: Any) -> bytes:
    """A body shaped like Codex CLI 0.171.0's (client_metadata names the id twice), the prompt repeating it."""
    turn = json.dumps({"installation_id": installation, "session_id": "s-1", "model": "gpt-5.1-codex"})
    metadata = {"thread_id": "t-1", "x-codex-installation-id": installation, "x-codex-turn-metadata": turn}
    body = {"model": "gpt-5.1-codex", "input": [{"type": "message", "content": "hello"}], **extra}
    body["client_metadata"] = metadata
    return json.dumps(body).encode()


def rewritten(body: bytes | None, headers: dict[str, str], account: str | None = ACCOUNT) -> bytes | None:
    fields = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    routing = f'{{["{gc.ROUTING_ACCOUNT_INSTALLATION}"] = {lua_string(account)}}}' if account else "{}"
    driver = (
        f"local handle, _, body = request_handle({{{fields}}}, {'nil' if body is None else lua_string(body)}, "
        f'{{["{gc.NS_ROUTING}"] = {routing}}})\n'
        "envoy_on_request(handle)\nemit(body())"
    )
    (out,) = run_lua(INSTALLATION_BODY_LUA, driver)
    assert out is None or isinstance(out, bytes)
    return out


def test_every_copy_of_the_client_id_becomes_the_accounts() -> None:
    out = rewritten(codex_body(), JSON_HEADERS)
    assert out is not None and CLIENT.encode() not in out and len(out) == len(codex_body())
    parsed = json.loads(out)
    metadata = parsed["client_metadata"]
    assert metadata["x-codex-installation-id"] == ACCOUNT
    assert json.loads(metadata["x-codex-turn-metadata"])["installation_id"] == ACCOUNT
    assert out == codex_body(ACCOUNT)  # nothing else changed


def test_bodies_it_must_not_touch_stay_as_they_were() -> None:
    body = codex_body()
    assert rewritten(body, JSON_HEADERS, account=None) == body  # the ext_proc named no account id
    assert rewritten(body, JSON_HEADERS, account="not-a-uuid") == body
    assert rewritten(body, {"content-type": "multipart/form-data"}) == body
    assert rewritten(body, {**JSON_HEADERS, "content-encoding": "zstd"}) == body
    short = codex_body(installation="1")  # not a UUID: replacing "1" everywhere would break the body
    assert rewritten(short, JSON_HEADERS) == short
    no_metadata = json.dumps({"model": "m", "note": CLIENT}).encode()
    assert rewritten(no_metadata, JSON_HEADERS) == no_metadata
    assert rewritten(None, JSON_HEADERS) is None
    quoted = json.dumps({"input": [{"text": json.dumps({"x-codex-installation-id": CLIENT})}]}).encode()
    assert rewritten(quoted, JSON_HEADERS) == quoted  # the key inside a string (escaped quotes) is no member
