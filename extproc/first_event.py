"""The first-event processor: an SSE attempt whose turn fails before its first output goes to another account.

Registered as `first_event` (the Codex responses route's processor, pooler/route_table.py). Request headers are
the Codex processor's, plus the decision guard's mark on a decided attempt (its filter fails open, so that a
process dying mid-hold lets the answer through; the guard keeps the request side closed). Its cluster's filter
sends response headers and streams the response body without waiting for the headers' answer
(`send_body_without_waiting_for_header_response`), so the headers of a 200 `text/event-stream` answer can be
held here while the first body chunks arrive:

- the first meaningful event (pooler/gateway/first_event.py) is a failure (`response.failed`, `error`): the
  attempt becomes an error answer the router retries on another account (`:status` 503, or 429 for a limit
  code), with the failure's code in the error header the per-attempt access log reads, as an error body's would
  be; the held chunks become a JSON error body (what a client gets when no retry is left) and every later chunk
  is dropped, until the failed stream ends (a failure event is its turn's last);
- anything else: the headers and held chunks go on unchanged, and the stream ends at once, so the rest of the
  answer never reaches Python (1-2 body messages per attempt);
- any other answer (not 200, not SSE, no body) passes at once; and when the hold deadline passes without a
  deciding event (a slow first event), everything held goes on unchanged.

The deadline comes from the filter (gRPC initial metadata, rendered below Envoy's `message_timeout`, which
would otherwise answer the client 504 for a held message).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.bodyops import error_payload, set_headers, status_of
from extproc.codex import CodexProcessor
from extproc.phases import Answers, Attempt, Decision
from pooler import gateway_contract as gc
from pooler.gateway.evidence import STREAM_CODE_STATUS
from pooler.gateway.first_event import UNNAMED_FAILURE, FirstEvent, Verdict, safe_token, scan

if TYPE_CHECKING:
    from extproc.processor import AttemptProcessor

EVENT_STREAM = "text/event-stream"
FAILED_MESSAGE = "The upstream account failed this response before it started; retry the request."
_CONTINUE_HEADERS = ep.ProcessingResponse(response_headers=ep.HeadersResponse())
_CONTINUE_BODY = ep.ProcessingResponse(response_body=ep.BodyResponse())


def _clear_body() -> ep.ProcessingResponse:
    resp = ep.ProcessingResponse()
    resp.response_body.response.body_mutation.clear_body = True
    return resp


_CLEAR_BODY = _clear_body()


class FirstEventProcessor(CodexProcessor):
    """State of one attempt on a held route (one ext_proc stream)."""

    __slots__ = ("_buffer", "_deadline", "_ended", "_failed", "_held", "hold_seconds", "model")

    def __init__(self, gateway: AttemptProcessor, hold_seconds: float) -> None:
        super().__init__(gateway)
        self.hold_seconds = hold_seconds
        self.model: str | None = None
        self._deadline: float | None = None
        """Set while the headers are held."""
        self._held = 0
        """Body chunks received while holding (each is answered after the headers, in order)."""
        self._buffer = b""
        self._ended = False
        self._failed = False

    def request_headers(self, attempt: Attempt) -> Decision:
        decision = super().request_headers(attempt)
        self.model = attempt.model
        return decision

    def routed(self, attempt: Attempt, decision: ep.ProcessingResponse) -> None:
        # Its filter fails open (a hold must not fail a served turn): the decision guard after it lets only an
        # attempt with this mark go upstream (pooler/envoy_config/lua/decision_guard.lua).
        if self.hold_seconds > 0 and decision.WhichOneof("response") == "request_headers":
            set_headers(decision.request_headers.response.header_mutation, ((gc.DECIDED_HEADER, b"1"),))

    @property
    def held_until(self) -> float | None:
        return self._deadline

    @property
    def ended(self) -> bool:
        return self._ended

    def response_headers(self, headers: ep.HttpHeaders) -> Answers:
        if (
            self.hold_seconds <= 0
            or headers.end_of_stream
            or status_of(headers) != 200
            or not _content_type(headers).startswith(EVENT_STREAM)
        ):
            self._ended = True
            return _CONTINUE_HEADERS
        self._deadline = time.monotonic() + self.hold_seconds
        return ()

    def response_body(self, body: ep.HttpBody) -> Answers:
        if self._failed:
            return _CLEAR_BODY  # the rest of a failed stream: the error body replaced it
        if self._deadline is None:
            self._ended = True  # not held (cannot happen after a pass: the stream ended)
            return _CONTINUE_BODY
        self._held += 1
        self._buffer += body.body
        verdict = scan(self._buffer)
        if verdict.verdict is Verdict.FAILED:
            return self._fail(verdict)
        if verdict.verdict is Verdict.STARTED or body.end_of_stream:
            return self.expire()
        return ()

    def expire(self) -> tuple[ep.ProcessingResponse, ...]:
        """Everything held goes on unchanged and the stream ends (the turn started, or the deadline passed)."""
        answers = (_CONTINUE_HEADERS, *([_CONTINUE_BODY] * self._held))
        self._release()
        self._ended = True
        return answers

    def _fail(self, failure: FirstEvent) -> tuple[ep.ProcessingResponse, ...]:
        code = failure.code or UNNAMED_FAILURE
        status = STREAM_CODE_STATUS.get(code, 503)
        body = error_payload(FAILED_MESSAGE, code, failure.type or "server_error")
        # The error header in the reader's format (pooler/envoy_config/lua/upstream_errors.lua): the per-attempt
        # access log takes the attempt's status and code from it, so the account learns what it would from
        # the same error as a status and body (pooler.gateway.evidence).
        parts = [f"status={status}", f"code={code}"]
        if failure.type:
            parts.append(f"type={failure.type}")
        if status == 429 and safe_token(self.model):
            parts.append(f"model={self.model}")
        headers = ep.ProcessingResponse()
        mutation = headers.response_headers.response.header_mutation
        set_headers(
            mutation,
            (
                (":status", b"%d" % status),
                ("content-type", b"application/json"),
                (gc.UPSTREAM_ERROR_HEADER, " ".join(parts).encode()),
            ),
        )
        mutation.remove_headers.append("content-length")
        first = ep.ProcessingResponse()
        first.response_body.response.body_mutation.body = body
        answers = (headers, first, *([_CLEAR_BODY] * (self._held - 1)))
        self._release()
        self._failed = True
        return answers

    def _release(self) -> None:
        self._deadline = None
        self._held = 0
        self._buffer = b""


def _content_type(headers: ep.HttpHeaders) -> str:
    for h in headers.headers.headers:
        if h.key == "content-type":
            raw: bytes = h.raw_value or h.value.encode()
            return raw.decode("latin-1").lower()
    return ""
