"""Unit tests of the /v1 translators' edges: SSE framing, request errors, upstream errors, models, cost."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from extproc.v1 import model_allowed
from pooler.v1 import errors
from pooler.v1.chat_request import chat_to_responses
from pooler.v1.chat_stream import ChatStream
from pooler.v1.models import DEFAULT_MODELS, V1Route, classify, get_model, list_models
from pooler.v1.responses_request import normalize_responses
from pooler.v1.sse import SseDecoder, SseError, SseEvent

GOLDEN = Path(__file__).parent / "golden" / "v1"


# --- SSE framing ---------------------------------------------------------------------------------------------
def test_sse_fields_comments_and_multiline_data() -> None:
    dec = SseDecoder()
    events = dec.feed(b": keep-alive\n\nid: 1\nevent: a\ndata: x\ndata:y\n\ndata: [DONE]\n\n")
    assert events == [SseEvent("a", b"x\ny"), SseEvent("", b"[DONE]")]
    assert not dec.pending


def test_sse_crlf_split_between_chunks() -> None:
    dec = SseDecoder()
    assert dec.feed(b"event: a\r\ndata: 1\r") == []
    assert dec.feed(b"\n\r") == []
    assert dec.feed(b"\n") == [SseEvent("a", b"1")]


def test_sse_pending_and_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    dec = SseDecoder()
    dec.feed(b"data: {")
    assert dec.pending
    monkeypatch.setattr("pooler.v1.sse.MAX_EVENT_BYTES", 10)
    with pytest.raises(SseError):
        SseDecoder().feed(b"data: " + b"x" * 20)


# --- requests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content"),
        ({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}, "tools"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": 3}, "tool_choice"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "x"}}, None),
    ],
)
def test_chat_request_errors_are_400s(body: object, param: str | None) -> None:
    with pytest.raises(errors.V1Error) as info:
        chat_to_responses(body)
    assert info.value.status == 400
    assert info.value.type == "invalid_request_error"
    if param:
        assert info.value.param == param


def test_chat_legacy_functions() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "functions": [{"name": "f", "parameters": {"type": "object"}}],
        "function_call": {"name": "f"},
    }
    out = chat_to_responses(body).body
    assert out["tools"] == [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "function", "name": "f"}


@pytest.mark.parametrize("body", [None, {"input": "x"}, {"model": "m", "input": 3}, {"model": "m", "input": [1]}])
def test_responses_request_errors(body: object) -> None:
    with pytest.raises(errors.V1Error) as info:
        normalize_responses(body)
    assert info.value.status == 400


def test_responses_defaults() -> None:
    result = normalize_responses({"model": "m", "input": "hi", "stream": False, "store": True})
    assert result.stream is False
    assert result.body["stream"] is True and result.body["store"] is False
    assert result.body["instructions"]
    assert result.body["include"] == ["reasoning.encrypted_content"]


# --- errors --------------------------------------------------------------------------------------------------
def test_error_body_shape() -> None:
    body = json.loads(errors.unsupported_endpoint("POST", "/v1/embeddings?x=1").body())
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "unsupported_endpoint"
    assert "/v1/embeddings" in body["error"]["message"] and "x=1" not in body["error"]["message"]


def test_upstream_codex_429_keeps_code_and_reset() -> None:
    raw = json.dumps(
        {"error": {"type": "usage_limit_reached", "message": "limit", "plan_type": "plus", "resets_at": 1700}}
    ).encode()
    err = errors.from_upstream(429, raw)
    assert err.status == 429
    assert err.error_object() == {
        "message": "limit",
        "type": "usage_limit_reached",
        "param": None,
        "code": "usage_limit_reached",
        "resets_at": 1700,
        "plan_type": "plus",
    }


@pytest.mark.parametrize(
    ("status", "raw", "code", "kind", "message"),
    [
        (400, b'{"detail":"Unsupported parameter: temperature"}', None, "invalid_request_error", "Unsupported"),
        (401, b'{"error":{"message":"expired","code":"token_expired"}}', "token_expired", "authentication_error", ""),
        (502, b"<html>bad gateway</html>", None, "server_error", "Upstream error (HTTP 502)"),
        (400, b'{"error":{"message":"x","code":"previous_response_not_found"}}', "previous_response_not_found", "", ""),
    ],
)
def test_upstream_errors(status: int, raw: bytes, code: str | None, kind: str, message: str) -> None:
    err = errors.from_upstream(status, raw)
    assert err.status == status and err.code == code
    assert kind in err.type and message in err.message


# --- models --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "route", "model"),
    [
        ("GET", "/v1/models", V1Route.MODELS, ""),
        ("GET", "/v1/models/", V1Route.MODELS, ""),
        ("GET", "/v1/models/gpt-5.1-codex", V1Route.MODEL, "gpt-5.1-codex"),
        ("POST", "/v1/responses", V1Route.RESPONSES, ""),
        ("POST", "/v1/chat/completions?x=1", V1Route.CHAT, ""),
        ("GET", "/v1/chat/completions", V1Route.UNSUPPORTED, ""),
        ("POST", "/v1/embeddings", V1Route.UNSUPPORTED, ""),
        ("POST", "/v1/audio/speech", V1Route.UNSUPPORTED, ""),
        ("POST", "/v1/images/generations", V1Route.UNSUPPORTED, ""),
        ("GET", "/v1/files", V1Route.UNSUPPORTED, ""),
        ("POST", "/v1/batches", V1Route.UNSUPPORTED, ""),
        ("POST", "/v1/moderations", V1Route.UNSUPPORTED, ""),
        ("POST", "/v1/fine_tuning/jobs", V1Route.UNSUPPORTED, ""),
        ("GET", "/v1/responses/resp_1", V1Route.UNSUPPORTED, ""),
    ],
)
def test_classify(method: str, path: str, route: V1Route, model: str) -> None:
    assert classify(method, path) == (route, model)


def test_models_lists() -> None:
    assert [m["id"] for m in list_models(None)["data"]] == list(DEFAULT_MODELS)
    assert [m["id"] for m in list_models(["b", "a", "b"])["data"]] == ["b", "a"]
    assert [m["id"] for m in list_models(["a", "b"], ["b", "c"])["data"]] == ["b"]
    assert [m["id"] for m in list_models(None, ["c"])["data"]] == ["c"]
    assert list_models(["a"]) == {
        "object": "list",
        "data": [{"id": "a", "object": "model", "created": 1735689600, "owned_by": "openai"}],
    }
    assert get_model("a", ["a"])["id"] == "a"
    with pytest.raises(errors.V1Error) as info:
        get_model("z", ["a"])
    assert info.value.status == 404 and info.value.code == "model_not_found"


# --- cost ----------------------------------------------------------------------------------------------------
def test_chat_stream_per_delta_cost_is_small() -> None:
    """A long answer streamed one token per upstream chunk: the cost per chunk stays flat and small."""
    delta = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":9,'
        b'"item_id":"msg_1","output_index":0,"content_index":0,"delta":" word"}\n\n'
    )
    head = (GOLDEN / "upstream" / "text.sse").read_bytes().split(b"\n\n")[0] + b"\n\n"
    stream = ChatStream("m")
    stream.feed(head)
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        stream.feed(delta)
    per_chunk = (time.perf_counter() - start) / n
    assert per_chunk < 50e-6, f"{per_chunk * 1e6:.1f} µs per chunk"


def test_request_json_refuses_bad_and_too_deeply_nested_bodies_as_invalid_json() -> None:
    assert errors.request_json(b'{"model": "m", "input": [[1]]}') == {"model": "m", "input": [[1]]}
    for raw in (b'{"model": ', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(errors.V1Error) as info:
            errors.request_json(raw)
        assert info.value.status == 400 and info.value.code == "invalid_json"


def test_model_allowed_needs_both_allow_lists() -> None:
    assert model_allowed("a", None, None)
    assert model_allowed("a", frozenset({"a"}), frozenset({"a", "b"}))
    assert not model_allowed("b", frozenset({"a"}), None)
    assert not model_allowed("a", None, frozenset({"b"}))
