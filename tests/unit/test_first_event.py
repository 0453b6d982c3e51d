"""The first-event hold: the pure verdict on an SSE answer's first bytes, the processor's answers for each
outcome, and the stream loop's deadline - without sockets, Envoy or a database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.first_event import FirstEventProcessor
from extproc.phases import Answers, Attempt, StreamProcessor
from extproc.processors import Processors
from extproc.server import ExternalProcessorService
from pooler import gateway_contract as gc
from pooler.gateway.evidence import parse_upstream_error
from pooler.gateway.first_event import HOLD_LIMIT_BYTES, FirstEvent, Verdict, scan
from tests.unit.test_extproc_phases import _gateway, _headers


def _sse(kind: str, named: bool = True, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, **fields}).encode()
    return (b"event: " + kind.encode() + b"\n" if named else b"") + b"data: " + data + b"\n\n"


CREATED = _sse("response.created", response={"id": "r", "instructions": "x" * 2000})
IN_PROGRESS = _sse("response.in_progress", response={"id": "r"})
ADDED = _sse("response.output_item.added", item={"type": "message"})
OVERLOADED = _sse("response.failed", response={"id": "r", "error": {"code": "server_is_overloaded", "message": "m"}})


# --- the verdict ------------------------------------------------------------------------------------------
def test_the_opening_events_decide_nothing_and_the_next_one_does() -> None:
    assert scan(b"") == FirstEvent(Verdict.PENDING)
    assert scan(CREATED + IN_PROGRESS).verdict is Verdict.PENDING
    assert scan(CREATED + IN_PROGRESS[:20]).verdict is Verdict.PENDING  # an event cut between chunks
    assert scan(CREATED + IN_PROGRESS + ADDED).verdict is Verdict.STARTED
    assert scan(CREATED + ADDED + OVERLOADED).verdict is Verdict.STARTED  # a failure after output: too late


def test_a_failure_first_names_its_code_whatever_the_line_endings() -> None:
    assert scan(CREATED + IN_PROGRESS + OVERLOADED) == FirstEvent(Verdict.FAILED, "server_is_overloaded", None)
    crlf = (CREATED + OVERLOADED).replace(b"\n", b"\r\n")
    assert scan(crlf).code == "server_is_overloaded"
    error = _sse("error", named=False, error={"type": "invalid_request_error", "code": "context_length_exceeded"})
    assert scan(error) == FirstEvent(Verdict.FAILED, "context_length_exceeded", "invalid_request_error")
    assert scan(_sse("error", code="rate_limit_exceeded")).code == "rate_limit_exceeded"


def test_a_failure_without_a_safe_code_gets_a_generic_one() -> None:
    unnamed = _sse("response.failed", response={"error": {"code": "two words", "message": "secret prompt"}})
    assert scan(unnamed) == FirstEvent(Verdict.FAILED, "stream_failed", None)


def test_what_the_scanner_does_not_understand_passes() -> None:
    assert scan(b"data: not json\n\n").verdict is Verdict.STARTED
    assert scan(b": keep-alive\n\n" + ADDED).verdict is Verdict.STARTED  # a comment decides nothing
    assert scan(b"data: [1]\n\n").verdict is Verdict.STARTED


def test_a_stream_is_never_held_past_the_limit() -> None:
    assert scan(b"data: " + b"x" * HOLD_LIMIT_BYTES).verdict is Verdict.STARTED


# --- the processor ----------------------------------------------------------------------------------------
def _response_headers(status: int = 200, content_type: str = "text/event-stream", end: bool = False) -> ep.HttpHeaders:
    headers = ep.HttpHeaders(end_of_stream=end)
    for key, value in ((":status", str(status)), ("content-type", content_type)):
        headers.headers.headers.add(key=key, raw_value=value.encode())
    return headers


def _processor(hold: float = 1.5) -> FirstEventProcessor:
    return FirstEventProcessor(cast(Any, None), hold)


def _kinds(answers: Answers) -> list[str]:
    return [a.WhichOneof("response") for a in (answers if isinstance(answers, tuple) else (answers,))]


def test_a_started_turn_releases_everything_unchanged_and_ends_the_stream() -> None:
    p = _processor()
    assert p.response_headers(_response_headers()) == ()
    assert p.held_until is not None and not p.ended
    assert p.response_body(ep.HttpBody(body=CREATED)) == ()
    answers = p.response_body(ep.HttpBody(body=IN_PROGRESS + ADDED))
    assert isinstance(answers, tuple)
    assert _kinds(answers) == ["response_headers", "response_body", "response_body"]
    assert all(not a.response_headers.HasField("response") for a in answers[:1])  # no mutation
    assert all(not a.response_body.HasField("response") for a in answers[1:])
    assert p.ended and p.held_until is None


def test_a_failed_start_becomes_a_retriable_error_the_access_log_reads() -> None:
    p = _processor()
    p.model = "gpt-5.1-codex"
    p.response_headers(_response_headers())
    p.response_body(ep.HttpBody(body=CREATED + IN_PROGRESS))
    answers = p.response_body(ep.HttpBody(body=OVERLOADED))
    assert isinstance(answers, tuple) and _kinds(answers) == ["response_headers", "response_body", "response_body"]
    mutation = answers[0].response_headers.response.header_mutation
    headers = {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}
    assert headers[":status"] == "503"  # in the route's retriable statuses: the router tries another account
    assert headers["content-type"] == "application/json" and "content-length" in mutation.remove_headers
    error = parse_upstream_error(headers[gc.UPSTREAM_ERROR_HEADER])
    assert error is not None and (error.status, error.code) == (503, "server_is_overloaded")
    body = json.loads(answers[1].response_body.response.body_mutation.body)
    assert body["error"]["code"] == "server_is_overloaded" and body["error"]["message"] != "m"
    assert answers[2].response_body.response.body_mutation.clear_body
    # The rest of the failed stream is dropped (what a client gets when no retry is left is the JSON error).
    later = p.response_body(ep.HttpBody(body=b"data: more\n\n", end_of_stream=True))
    assert not isinstance(later, tuple) and later.response_body.response.body_mutation.clear_body


def test_a_limit_code_is_the_status_it_would_be_and_names_the_model() -> None:
    p = _processor()
    p.model = "gpt-5.1-codex"
    p.response_headers(_response_headers())
    answers = p.response_body(ep.HttpBody(body=_sse("error", code="usage_limit_reached")))
    assert isinstance(answers, tuple)
    mutation = answers[0].response_headers.response.header_mutation
    headers = {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}
    assert headers[":status"] == "429"
    error = parse_upstream_error(headers[gc.UPSTREAM_ERROR_HEADER])
    assert error is not None and (error.status, error.code, error.model) == (
        429,
        "usage_limit_reached",
        "gpt-5.1-codex",
    )


def test_other_answers_pass_at_once() -> None:
    for headers in (
        _response_headers(status=429, content_type="application/json"),
        _response_headers(content_type="application/json"),
        _response_headers(end=True),
    ):
        p = _processor()
        assert _kinds(p.response_headers(headers)) == ["response_headers"]
        assert p.ended and p.held_until is None
    off = _processor(hold=0.0)  # a filter that names no deadline holds nothing
    assert _kinds(off.response_headers(_response_headers())) == ["response_headers"] and off.ended


def test_a_stream_ending_before_a_deciding_event_is_released() -> None:
    p = _processor()
    p.response_headers(_response_headers())
    answers = p.response_body(ep.HttpBody(body=CREATED, end_of_stream=True))
    assert _kinds(answers) == ["response_headers", "response_body"] and p.ended


def test_the_registry_opens_one_per_stream_with_its_filters_deadline() -> None:
    processors = Processors(_gateway())
    first = processors.open(gc.PROCESSOR_FIRST_EVENT, 1.5)
    assert isinstance(first, FirstEventProcessor) and first.hold_seconds == 1.5
    assert processors.open(gc.PROCESSOR_FIRST_EVENT, 1.5) is not first


# --- the stream loop's deadline ---------------------------------------------------------------------------
class HoldsForever(StreamProcessor):
    """Holds the response headers with a deadline already past: the loop must release them without a message."""

    __slots__ = ("expired",)

    def __init__(self) -> None:
        self.expired = False

    def request_headers(self, attempt: Attempt) -> ep.ProcessingResponse:
        return ep.ProcessingResponse(request_headers=ep.HeadersResponse())

    @property
    def held_until(self) -> float | None:
        return None if self.expired else 0.0

    @property
    def ended(self) -> bool:
        return self.expired

    def response_headers(self, headers: ep.HttpHeaders) -> Answers:
        return ()

    def expire(self) -> tuple[ep.ProcessingResponse, ...]:
        self.expired = True
        return (ep.ProcessingResponse(response_headers=ep.HeadersResponse()),)


def test_the_loop_releases_held_answers_at_the_deadline_and_ends_the_stream() -> None:
    service = ExternalProcessorService(_gateway(SimpleNamespace(version=1)))
    processor = HoldsForever()
    service.processors = cast(Processors, SimpleNamespace(open=lambda name, hold: processor))
    never = asyncio.Event()
    metadata = [(gc.STREAM_CLOSE_METADATA_KEY, gc.STREAM_CLOSE_GRACEFUL)]
    context = SimpleNamespace(invocation_metadata=lambda: metadata)

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        yield _headers("readyz")  # a headers-only row: `begin` needs nothing more (no scanner mark)
        held = ep.ProcessingRequest()
        held.response_headers.SetInParent()
        yield held
        await never.wait()  # the body's first chunk never comes: only the deadline can answer
        yield held

    async def collect() -> list[ep.ProcessingResponse]:
        return [reply async for reply in service.Process(requests(), context)]

    replies = asyncio.run(collect())
    assert [r.WhichOneof("response") for r in replies] == ["request_headers", "response_headers"]
    assert processor.expired
