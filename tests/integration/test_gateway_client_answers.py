"""Real Envoy + ext_proc + PostgreSQL + simulator: what a client is told when the gateway refuses a request itself.

Each refusal is a 4xx a client will not retry (never a 503 that Codex retries for ~30 s and the SDKs raise as
InternalServerError) with its own code, and the simulator's journal proves no account was spent on it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
import zstandard

from pooler import gateway_contract as gc
from tests.support.gateway import Gateway, running_gateway
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration

ALLOWED = "gpt-5.1-codex"
OTHER = "gpt-5-pro"


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-client-answers")) as gateway:
        yield gateway


def _end(gw: Gateway) -> int:
    journal = gw.simulator.client.journal()
    return int(journal[-1]["seq"]) if journal else 0


def _upstream_calls(gw: Gateway, since: int) -> list[dict[str, object]]:
    """Every request the simulator received after `since` (any route: nothing may reach it)."""
    return list(gw.simulator.client.journal(since=since))


def _codex(gw: Gateway, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{gw.codex_base}/responses",
        content=body,
        headers={"Content-Type": "application/json", "Accept": "text/event-stream", **headers},
        timeout=30,
    )


def _error(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("where", ["pool", "key"])
def test_a_model_off_the_allow_list_is_a_403_on_every_route(gw: Gateway, where: str) -> None:
    settings = {"allowed_models": [ALLOWED]} if where == "pool" else {}
    key_fields = {"allowed_models": [ALLOWED]} if where == "key" else None
    seeded = gw.seed_pool(f"models-{where}", ["acct-mn1"], key_fields=key_fields, **settings)
    since = _end(gw)

    codex = _codex(gw, json.dumps(turn_body(model=OTHER)).encode(), {"Authorization": f"Bearer {seeded.key}"})
    assert codex.status_code == 403, codex.text
    error = _error(codex)
    assert error["code"] == "model_not_allowed" and error["type"] == "invalid_request_error"

    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=seeded.key, max_retries=0, timeout=30) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as responses_info:
            sdk.responses.create(model=OTHER, input="hello")
        with pytest.raises(openai.PermissionDeniedError) as chat_info:
            sdk.chat.completions.create(model=OTHER, messages=[{"role": "user", "content": "hello"}])
        for info in (responses_info, chat_info):
            assert info.value.status_code == 403 and info.value.code == "model_not_allowed"
        # The control: the allowed model goes through on the same key.
        assert sdk.responses.create(model=ALLOWED, input="hello").status == "completed"
    calls = _upstream_calls(gw, since)
    assert [c["model"] for c in calls if c["route"] == "responses"] == [ALLOWED], calls


def test_a_missing_key_is_told_apart_from_a_wrong_one(gw: Gateway) -> None:
    seeded = gw.seed_pool("missing-key", ["acct-mk1"])
    since = _end(gw)
    body = json.dumps(turn_body()).encode()
    for headers in ({}, {"Authorization": "Bearer"}, {"x-api-key": ""}):
        missing = _codex(gw, body, headers)
        assert missing.status_code == 401, (headers, missing.text)
        error = _error(missing)
        assert error["code"] == "missing_api_key" and "Missing Pool API key" in str(error["message"])
    wrong = _codex(gw, body, {"Authorization": f"Bearer {seeded.key[:-4]}AAAA"})
    assert wrong.status_code == 401 and _error(wrong)["code"] == "invalid_api_key"
    v1 = httpx.post(f"{gw.url}/v1/responses", json={"model": ALLOWED, "input": "hi"}, timeout=30)
    assert v1.status_code == 401 and _error(v1)["code"] == "missing_api_key"
    assert _upstream_calls(gw, since) == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "gpt-5.1-codex", "input": [',  # cut short
        b"model=gpt-5.1-codex",  # not JSON at all
        b'{"model": "gpt-5.1-codex",}',  # a trailing comma
        b'[{"model": "gpt-5.1-codex"}]',  # JSON, but not the object every Codex route takes
    ],
    ids=["truncated", "not-json", "trailing-comma", "array"],
)
def test_malformed_json_on_the_codex_route_is_a_400_before_any_account(gw: Gateway, body: bytes) -> None:
    seeded = gw.seed_pool(f"badjson-{uuid.uuid4().hex[:12]}", ["acct-bj1"])  # unique: one database per run
    since = _end(gw)
    response = _codex(gw, body, {"Authorization": f"Bearer {seeded.key}"})
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["code"] == "invalid_json" and error["type"] == "invalid_request_error"
    assert _upstream_calls(gw, since) == []
    # The key is still checked first: a malformed body without a key is a 401, not a hint about the body.
    assert _codex(gw, body, {}).status_code == 401


def test_a_compressed_body_is_not_mistaken_for_malformed_json(gw: Gateway) -> None:
    """Codex sends `content-encoding: zstd`: the scanner cannot read those bytes, and must not call them invalid."""
    seeded = gw.seed_pool("zstd-body", ["acct-zb1"])
    since = _end(gw)
    body = zstandard.ZstdCompressor().compress(json.dumps(turn_body("compressed")).encode())
    response = _codex(gw, body, {"Authorization": f"Bearer {seeded.key}", "Content-Encoding": "zstd"})
    assert response.status_code == 200, response.text[:300]
    calls = [c for c in _upstream_calls(gw, since) if c["route"] == "responses"]
    assert [c["account"] for c in calls] == ["acct-zb1"]


@pytest.mark.parametrize("path", ["/backend-api/codex/responses", "/v1/responses"])
def test_a_body_over_the_buffer_limit_is_a_413_invalid_request(gw: Gateway, path: str) -> None:
    seeded = gw.seed_pool(f"huge-{path.rsplit('/', 2)[-2]}", ["acct-hb1"])
    since = _end(gw)
    body = json.dumps(turn_body("x" * (17 * 1024 * 1024))).encode()  # over Envoy's 16 MiB buffer
    response = httpx.post(
        f"{gw.url}{path}",
        content=body,
        headers={"Authorization": f"Bearer {seeded.key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413, response.text[:300]
    error = _error(response)
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert _upstream_calls(gw, since) == []


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/chat/completions"])
def test_too_deeply_nested_json_on_v1_is_a_400_without_a_traceback(gw: Gateway, path: str) -> None:
    seeded = gw.seed_pool(f"deep-{path.rsplit('/', 1)[-1]}", ["acct-dn1"])
    since = _end(gw)
    log_before = gw.extproc.log_text().count("Traceback")
    depth = 50_000
    field = "input" if path == "/v1/responses" else "messages"
    body = b'{"model": "gpt-5.1-codex", "%s": %s%s}' % (field.encode(), b"[" * depth, b"]" * depth)
    response = httpx.post(
        f"{gw.url}{path}",
        content=body,
        headers={"Authorization": f"Bearer {seeded.key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text[:300]
    assert _error(response)["code"] == "invalid_json"
    assert _upstream_calls(gw, since) == []
    assert gw.extproc.log_text().count("Traceback") == log_before


def _spend(gw: Gateway, account: str) -> None:
    gw.simulator.client.upsert_account(account, primary_used_percent=100)


def test_the_gateways_429_carries_the_pooled_quota_headers(gw: Gateway) -> None:
    seeded = gw.seed_pool("spent-view", ["acct-sv1", "acct-sv2"], plan="pro")
    for account in ("acct-sv1", "acct-sv2"):
        _spend(gw, account)
    body = json.dumps(turn_body()).encode()
    auth = {"Authorization": f"Bearer {seeded.key}"}
    # First the upstream's 429s teach the gateway (the answer after the failover); then, from the snapshot,
    # the gateway answers alone. Both are the gateway's own 429 and both carry the pool's figures.
    first = _codex(gw, body, auth)
    assert first.status_code == 429, first.text
    since = _end(gw)
    again = _codex(gw, body, auth)
    assert again.status_code == 429 and _error(again)["type"] == "usage_limit_reached"
    assert _upstream_calls(gw, since) == []
    for response in (first, again):
        headers = response.headers
        for name in gc.VIEW_HEADERS:
            if "secondary" not in name:
                assert name in headers, (name, dict(headers))
        assert headers["x-codex-primary-used-percent"] == "100"
        assert headers["x-codex-plan-type"] == "pro"
        assert int(headers["x-codex-primary-window-minutes"]) == 300
        reset_at = int(headers["x-codex-primary-reset-at"])
        assert reset_at == int(_error(response)["resets_at"])  # type: ignore[call-overload]
        assert abs(int(headers["x-codex-primary-reset-after-seconds"]) - (reset_at - time.time())) <= 2
        assert int(headers["retry-after"]) >= 1
