"""Pure pieces of the ext_proc: route families, key extraction, response builders, evidence, session keys."""

from __future__ import annotations

import json
import time

from google.protobuf.struct_pb2 import Struct

from extproc import responses
from extproc.limits import RequestRateLimiter
from extproc.processor import misconfigured, model_from_turn_metadata, presented_key, route_of
from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.crypto.hashing import KeyedHasher
from pooler.gateway.evidence import AttemptRecord, UpstreamError, attempt_effect, attempt_outcomes
from pooler.gateway.sessions import session_hash, session_key


def _scanned() -> Struct:
    struct = Struct()
    struct.update({gc.REQUEST_SCANNED: "1"})
    return struct


def test_the_route_comes_from_the_route_header_not_the_path() -> None:
    ws = route_of({rt.ROUTE_HEADER: "responses_ws", ":path": "/anything"})
    assert ws is not None and ws.family == gc.ROUTE_RESPONSES_WS and ws.websocket
    compact = route_of({rt.ROUTE_HEADER: "compact"})
    assert compact is not None and compact.family == gc.ROUTE_COMPACT and compact.admission == "compact"
    assert route_of({":path": "/backend-api/codex/responses"}) is None  # no route header: no row
    assert route_of({rt.ROUTE_HEADER: "no_such_route"}) is None
    assert route_of({rt.ROUTE_HEADER: "admin"}) is None  # not an ext_proc route


def test_a_request_that_skipped_a_rendered_piece_is_misconfigured() -> None:
    responses_row = rt.ROUTES_BY_NAME["responses"]
    chat = rt.ROUTES_BY_NAME["v1_chat_completions"]
    usage = rt.ROUTES_BY_NAME["usage_wham"]
    codex = "/backend-api/codex/responses"
    first = gc.PROCESSOR_FIRST_EVENT
    assert not misconfigured(responses_row, first, _scanned(), codex)
    assert misconfigured(responses_row, first, None, codex)  # the request scanner did not run
    # On the plain Codex cluster a turn failing at its first event would reach the client: refused.
    assert misconfigured(responses_row, None, _scanned(), codex)
    assert misconfigured(None, None, _scanned())
    # /v1 chat on the plain Codex cluster would go upstream untranslated: refused.
    assert misconfigured(chat, None, None)
    assert misconfigured(chat, gc.PROCESSOR_V1_RESPONSES, None)
    assert not misconfigured(chat, gc.PROCESSOR_V1_CHAT, None)
    # A Codex route on a /v1 cluster would be translated as if it were /v1.
    assert misconfigured(responses_row, gc.PROCESSOR_V1_CHAT, _scanned(), codex)
    assert not misconfigured(usage, None, None, "/backend-api/wham/usage")  # headers only, no scan needed
    # A borrowed row name: the websocket row needs the upgrade and its path; prefix rows their prefix.
    ws = rt.ROUTES_BY_NAME["responses_ws"]
    assert not misconfigured(ws, None, None, codex, websocket=True)
    assert misconfigured(ws, None, None, codex, websocket=False)
    assert misconfigured(ws, None, None, "/v1/chat/completions", websocket=True)
    images = rt.ROUTES_BY_NAME["v1_images_generations"]
    assert not misconfigured(images, None, _scanned(), "/backend-api/images/generations")  # after prefix_rewrite
    assert misconfigured(images, None, _scanned(), "/backend-api/files")
    item = rt.ROUTES_BY_NAME["files_item"]
    assert not misconfigured(item, None, _scanned(), "/backend-api/files/file_1")


def test_presented_key_bearer_or_x_api_key() -> None:
    assert presented_key({"authorization": "Bearer cpk_x"}) == "cpk_x"
    assert presented_key({"authorization": "bearer  cpk_y "}) == "cpk_y"
    assert presented_key({"x-api-key": "cpk_z"}) == "cpk_z"
    assert presented_key({}) is None
    assert model_from_turn_metadata('{"model":"gpt-5"}') == "gpt-5"
    assert model_from_turn_metadata("not json") is None


def test_error_bodies_are_openai_shaped_and_allow_listed() -> None:
    for code in responses.ERRORS:
        status, body = responses.error_body(code)
        error = json.loads(body)["error"]
        assert error["code"] == code and error["message"] and status >= 400
    reply = responses.error("invalid_api_key", {"pool_id": 1})
    assert reply.immediate_response.status.code == 401
    assert reply.dynamic_metadata.fields[gc.NS_ROUTING].struct_value.fields["error"].string_value == "invalid_api_key"
    limit = json.loads(responses.usage_limit_body(1000.0, 900.0))["error"]
    assert limit["type"] == "usage_limit_reached" and limit["resets_at"] == 1000 and limit["resets_in_seconds"] == 100


def test_forward_overwrites_and_removes() -> None:
    reply = responses.forward({"authorization": "Bearer t"}, ["x-api-key"], {"tried": [1, 2]})
    mutation = reply.request_headers.response.header_mutation
    assert mutation.set_headers[0].header.raw_value == b"Bearer t"
    assert mutation.set_headers[0].append_action == responses.OVERWRITE
    assert list(mutation.remove_headers) == ["x-api-key"]


def test_attempt_effects() -> None:
    now = time.time()
    headers = {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(now) + 600),
    }
    limited = attempt_effect(AttemptRecord("r", 1, 429, frozenset(), headers, now), 30)
    assert limited is not None and limited.limited_until == int(now) + 600
    default = attempt_effect(AttemptRecord("r", 1, 429, frozenset(), {}, now), 30)
    assert default is not None and default.limited_until is not None and 50 < default.limited_until - now <= 60
    refresh = attempt_effect(AttemptRecord("r", 1, 401, frozenset(), {}, now), 30)
    assert refresh is not None and refresh.refresh_requested
    demoted = attempt_effect(AttemptRecord("r", 1, 0, frozenset({"UF"}), {}, now), 30)
    assert demoted is not None and demoted.demoted_until == now + 30
    assert attempt_effect(AttemptRecord("r", 1, 200, frozenset(), {}, now), 30) is None
    # A websocket's normal end: its upstream connection closes after the 101 (Envoy flags UC). Not a failure.
    assert attempt_effect(AttemptRecord("r", 1, 101, frozenset({"UC"}), {}, now), 30) is None
    rows = attempt_outcomes([1, 2], [AttemptRecord("r", 1, 429, frozenset(), {}, now)], 200)
    assert rows == [(1, 429, "failed_over", None), (2, 200, "served", None)]
    coded = AttemptRecord("r", 1, 503, frozenset(), {}, now, UpstreamError(503, code="server_is_overloaded"))
    assert attempt_outcomes([1, 2], [coded], 200)[0] == (1, 503, "failed_over", "server_is_overloaded")


def test_session_key_priority_and_hash() -> None:
    assert session_key({"thread-id": "t", "session-id": "s"}, "p") == "s"
    assert session_key({}, "p") == "p"
    assert session_key({}, None) is None
    hasher = KeyedHasher(b"k" * 32)
    assert session_hash(hasher, 1, "s") != session_hash(hasher, 2, "s")
    assert "s" not in session_hash(hasher, 1, "s")


def test_rate_limiter_window() -> None:
    limiter = RequestRateLimiter()
    assert limiter.check_and_count(1, 2, 100.0) is None
    assert limiter.check_and_count(1, 2, 101.0) is None
    assert limiter.check_and_count(1, 2, 102.0) == 58
    assert limiter.check_and_count(1, 2, 161.0) is None


def test_refusals_a_client_must_not_retry_are_4xx_with_their_own_code() -> None:
    # A 503 is retried by Codex for ~30 s and raised as InternalServerError by the SDKs.
    for code, status in (("model_not_allowed", 403), ("invalid_json", 400), ("missing_api_key", 401)):
        got, body = responses.error_body(code)
        error = json.loads(body)["error"]
        assert got == status and error["type"] == "invalid_request_error", code
    missing = json.loads(responses.error_body("missing_api_key")[1])["error"]["message"]
    assert missing.startswith("Missing Pool API key") and missing != responses.ERRORS["invalid_api_key"][2]
