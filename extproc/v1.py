"""The /v1 processor: OpenAI-compatible requests translated onto the Codex backend, inside Envoy's path.

Picked once per ext_proc stream (like Envoy AI Gateway's per-path processors; registered as `v1_responses` and
`v1_chat` in extproc/processors.py). It runs in the upstream filter of its `codex_upstream_v1_*` cluster, whose
processing mode buffers the request body and sends response headers; authentication and the account pick of the
request-headers phase are the Codex processor's, unchanged, so keys, selection, failover, limits and request
logs are the same as on the Codex routes. This module adds:

- request body (BUFFERED): the /v1 body -> the Codex body (`pooler.v1` translators), path, accept and encoding
  headers rewritten; a bad request ends in an OpenAI-shaped immediate response (never retried).
- response headers: 2xx + client streaming -> body mode STREAMED (translate chunk by chunk); 2xx + `stream:
  false` or any error status -> BUFFERED (collect to one JSON object / translate the error body). A per-response
  mode override, so the Codex routes' cluster stays headers-only.
- response body: translated bytes; the token usage goes to NS_USAGE dynamic metadata for the request log
  (sse_to_metadata downstream sees the translated stream, not `response.completed`).

Every attempt is a new ext_proc stream and translates the request again from the body Envoy retries with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import responses
from extproc.bodyops import set_headers, status_of
from extproc.codex import CodexProcessor
from extproc.phases import Attempt, Decision
from pooler import gateway_contract as gc
from pooler.v1.chat_request import chat_to_responses
from pooler.v1.chat_stream import ChatStream
from pooler.v1.collect import ResponsesCollector, chat_completion
from pooler.v1.errors import V1Error, from_upstream, request_json, too_deeply_nested
from pooler.v1.models import V1Route, classify, get_model, list_models
from pooler.v1.responses_request import UpstreamRequest, normalize_responses
from pooler.v1.responses_stream import ResponsesStream
from pooler.v1.usage import token_counts

if TYPE_CHECKING:
    from extproc.processor import AttemptProcessor

CODEX_RESPONSES_PATH = "/backend-api/codex/responses"
STREAMED = processing_mode_pb2.ProcessingMode.STREAMED
BUFFERED = processing_mode_pb2.ProcessingMode.BUFFERED
JSON = b"application/json"
EVENT_STREAM = b"text/event-stream"

# Headers the upstream request gets on every attempt (mutations persist across attempts; overwrite, never add).
UPSTREAM_REQUEST_HEADERS = (
    (":path", CODEX_RESPONSES_PATH.encode()),
    ("content-type", JSON),
    ("accept", EVENT_STREAM),
    # The translators read the upstream bytes: a compressed reply (the SDKs send accept-encoding: gzip) would
    # be unreadable, so ask for identity.
    ("accept-encoding", b"identity"),
)


class V1Processor(CodexProcessor):
    """State of one /v1 upstream attempt (one ext_proc stream). Request headers are the Codex processor's
    (authentication, limits, account pick), exactly as on the Codex routes; the phases after them translate."""

    __slots__ = ("_chat", "_collector", "_passthrough", "allowed", "request", "route", "status")

    def __init__(self, gateway: AttemptProcessor, route: V1Route) -> None:
        super().__init__(gateway)
        self.route = route
        self.request: UpstreamRequest | None = None
        self.status = 0
        self.allowed: tuple[frozenset[str] | None, frozenset[str] | None] = (None, None)
        self._chat: ChatStream | None = None
        self._passthrough: ResponsesStream | None = None
        self._collector: ResponsesCollector | None = None

    # --- request ---------------------------------------------------------------------------------------------
    def request_headers(self, attempt: Attempt) -> Decision:
        decision = super().request_headers(attempt)
        # The model is only known once the body is read: keep what the key and its pool allow for that phase.
        if attempt.pool is not None and attempt.principal is not None:
            key = attempt.snapshot.keys.get(attempt.principal.key_prefix)
            self.allowed = (attempt.pool.policy.allowed_models, key.allowed_models if key else None)
        return decision

    def request_body(self, body: ep.HttpBody) -> ep.ProcessingResponse:
        try:
            self.request = self._translate(body.body)
            data = json.dumps(self.request.body, separators=(",", ":"), ensure_ascii=False).encode()
        except V1Error as err:
            return immediate(err)
        except RecursionError:  # a translator's or the encoder's walk of a nested value
            return immediate(too_deeply_nested())
        if not model_allowed(self.request.model, *self.allowed):
            # Refused here, before the upstream: the account picked for the headers never sees the request.
            return responses.error("model_not_allowed")
        resp = ep.ProcessingResponse()
        common = resp.request_body.response
        set_headers(common.header_mutation, (*UPSTREAM_REQUEST_HEADERS, ("content-length", b"%d" % len(data))))
        common.body_mutation.body = data
        # The Codex processor recorded the family from this attempt's :path, which a retry sees rewritten.
        routing = resp.dynamic_metadata.fields[gc.NS_ROUTING].struct_value.fields
        routing[gc.ROUTING_ROUTE_FAMILY].string_value = gc.ROUTE_V1
        return resp

    def _translate(self, raw: bytes) -> UpstreamRequest:
        parsed = request_json(raw)
        if self.route is V1Route.CHAT:
            return chat_to_responses(parsed)
        return normalize_responses(parsed)

    # --- response --------------------------------------------------------------------------------------------
    def response_headers(self, headers: ep.HttpHeaders) -> ep.ProcessingResponse:
        self.status = status_of(headers)
        resp = ep.ProcessingResponse()
        common = resp.response_headers.response
        streaming = self.request is not None and self.request.stream and 200 <= self.status < 300
        if streaming:
            assert self.request is not None
            if self.route is V1Route.CHAT:
                self._chat = ChatStream(self.request.model, self.request.include_usage)
            else:
                self._passthrough = ResponsesStream()
            resp.mode_override.response_body_mode = STREAMED
            set_headers(common.header_mutation, (("content-type", EVENT_STREAM),))
        else:
            if 200 <= self.status < 300:
                self._collector = ResponsesCollector()
            resp.mode_override.response_body_mode = BUFFERED
        common.header_mutation.remove_headers.append("content-length")
        return resp

    def response_body(self, body: ep.HttpBody) -> ep.ProcessingResponse:
        if self._chat is not None:
            return self._stream_chunk(self._chat, body)
        if self._passthrough is not None:
            return self._stream_chunk(self._passthrough, body)
        return self._buffered(body.body)

    def _stream_chunk(self, stream: ChatStream | ResponsesStream, body: ep.HttpBody) -> ep.ProcessingResponse:
        resp = ep.ProcessingResponse()
        out = stream.feed(body.body)
        if body.end_of_stream:
            out += stream.finish()
            _usage_metadata(resp, stream.usage)
        if stream is self._passthrough and out is body.body:
            return _CONTINUE_BODY  # unchanged bytes: no mutation to send back
        mutation = resp.response_body.response.body_mutation
        if out:
            mutation.body = out
        else:
            mutation.clear_body = True
        return resp

    def _buffered(self, raw: bytes) -> ep.ProcessingResponse:
        resp = ep.ProcessingResponse()
        status = self.status
        if self._collector is None:
            out = from_upstream(status, raw).body()
        else:
            self._collector.feed(raw)
            try:
                response = self._collector.result()
            except V1Error as err:
                status, out = err.status, err.body()
            else:
                if self.route is V1Route.CHAT and self.request is not None:
                    response = chat_completion(response, self.request.model)
                out = json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode()
            _usage_metadata(resp, self._collector.usage)
        common = resp.response_body.response
        headers = [("content-type", JSON), ("content-length", b"%d" % len(out))]
        if status != self.status:
            headers.append((":status", b"%d" % status))
        set_headers(common.header_mutation, headers)
        common.body_mutation.body = out
        return resp


_CONTINUE_BODY = ep.ProcessingResponse(response_body=ep.BodyResponse())


def model_allowed(model: str, pool_allowed: Iterable[str] | None, key_allowed: Iterable[str] | None) -> bool:
    """Both allow-lists (None: any model) admit `model` - the check the Codex routes make from the scanned body."""
    return (pool_allowed is None or model in pool_allowed) and (key_allowed is None or model in key_allowed)


def models_reply(
    path: str,
    pool_allowed: Iterable[str] | None,
    key_allowed: Iterable[str] | None,
    routing: Mapping[str, Any] | None = None,
) -> ep.ProcessingResponse:
    """`GET /v1/models[/{id}]` answered by the gateway after the key was authenticated (no upstream call)."""
    pool = sorted(pool_allowed) if pool_allowed is not None else None
    key = sorted(key_allowed) if key_allowed is not None else None
    route, model = classify("GET", path)
    try:
        payload = get_model(model, pool, key) if route is V1Route.MODEL else list_models(pool, key)
    except V1Error as err:
        resp = immediate(err)
    else:
        resp = ep.ProcessingResponse()
        imm = resp.immediate_response
        imm.status.code = 200
        imm.body = json.dumps(payload, separators=(",", ":")).encode()
        imm.details = "pooler_answer"
        set_headers(imm.headers, (("content-type", JSON),))
    fields = resp.dynamic_metadata.fields[gc.NS_ROUTING].struct_value.fields
    for name, value in (routing or {}).items():
        if isinstance(value, str):
            fields[name].string_value = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            fields[name].number_value = value
    return resp


def immediate(err: V1Error) -> ep.ProcessingResponse:
    resp = ep.ProcessingResponse()
    imm = resp.immediate_response
    imm.status.code = err.status
    imm.body = err.body()
    set_headers(imm.headers, (("content-type", JSON),))
    imm.details = f"pooler_v1_{err.code or 'error'}"
    err_ns = resp.dynamic_metadata.fields[gc.NS_ROUTING].struct_value
    err_ns.fields[gc.ROUTING_ERROR].string_value = err.code or "invalid_request"
    return resp


def _usage_metadata(resp: ep.ProcessingResponse, usage: dict[str, Any] | None) -> None:
    counts = token_counts(usage)
    if not counts:
        return
    fields = resp.dynamic_metadata.fields[gc.NS_USAGE].struct_value.fields
    for key, value in counts.items():
        fields[key].number_value = value
