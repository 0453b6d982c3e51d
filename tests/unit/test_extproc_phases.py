"""The ext_proc's stream processors: the registry by route-table processor name, the pass-through defaults, and
the stream loop's dispatch (one processor per stream, each message kind to its hook) - without sockets or a
database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.phases import LATER_PHASES, PASS_THROUGH, Attempt, StreamProcessor
from extproc.processor import AttemptProcessor
from extproc.processors import Processors
from extproc.server import ExternalProcessorService
from extproc.state import GatewayState
from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.crypto.hashing import KeyedHasher


def _gateway(snapshot: Any = None) -> AttemptProcessor:
    state = GatewayState(cast(Any, SimpleNamespace(hasher=KeyedHasher(b"k" * 32))))
    state.snapshot = snapshot  # `begin` only needs one to exist; the processors under test read what they use
    return AttemptProcessor(state)


def test_every_route_table_processor_is_registered() -> None:
    assert Processors(_gateway()).names() == frozenset(rt.PROCESSORS)


def test_headers_only_processors_are_shared_and_body_readers_are_per_stream() -> None:
    processors = Processors(_gateway())
    for name, spec in rt.PROCESSORS.items():
        first, second = processors.open(name), processors.open(name)
        assert (first is second) == spec.headers_only, name


def test_every_registered_processor_decides_request_headers() -> None:
    processors = Processors(_gateway())
    for name in rt.PROCESSORS:
        assert type(processors.open(name)).request_headers is not StreamProcessor.request_headers, name
    with pytest.raises(NotImplementedError):  # no pass-through: the server answers it fail-closed
        PASS_THROUGH.request_headers(cast(Attempt, None))


def test_later_phases_are_the_message_kinds_and_pass_through_by_default() -> None:
    kinds = {field.name for field in ep.ProcessingRequest.DESCRIPTOR.oneofs_by_name["request"].fields}
    assert kinds - {"request_headers"} == LATER_PHASES
    for kind in LATER_PHASES:
        reply = getattr(PASS_THROUGH, kind)(getattr(ep.ProcessingRequest(), kind))
        assert reply.WhichOneof("response") == kind  # "continue" of the matching kind


# --- the stream loop ----------------------------------------------------------------------------------------
def _headers(route: str | None) -> ep.ProcessingRequest:
    """Request headers as the row's Envoy route sends them (its path, its name)."""
    request = ep.ProcessingRequest()
    headers = request.request_headers.headers.headers
    row = rt.ROUTES_BY_NAME[route] if route else None
    path = (row.path or row.prefix or "/") if row else "/backend-api/codex/responses"
    for key, value in {":path": path, **({rt.ROUTE_HEADER: route} if route else {})}.items():
        headers.add(key=key, raw_value=value.encode())
    return request


def _message(kind: str) -> ep.ProcessingRequest:
    request = ep.ProcessingRequest()
    getattr(request, kind).SetInParent()
    return request


def _run(
    service: ExternalProcessorService, messages: Iterable[ep.ProcessingRequest], named: str | None = None
) -> list[Any]:
    metadata = [(gc.STREAM_CLOSE_METADATA_KEY, gc.STREAM_CLOSE_GRACEFUL)]  # no reset wait
    if named is not None:
        metadata.append((gc.PROCESSOR_METADATA_KEY, named))
    context = SimpleNamespace(invocation_metadata=lambda: metadata)

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        for message in messages:
            yield message

    async def collect() -> list[Any]:
        return [reply async for reply in service.Process(requests(), context)]

    return asyncio.run(collect())


class Recording(StreamProcessor):
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: list[str] = []

    def request_headers(self, attempt: Attempt) -> ep.ProcessingResponse:
        self.seen.append(f"request_headers:{attempt.route.name}")
        return ep.ProcessingResponse(request_headers=ep.HeadersResponse())

    def routed(self, attempt: Attempt, decision: ep.ProcessingResponse) -> None:
        self.seen.append(f"routed:{decision.WhichOneof('response')}")

    def request_body(self, body: ep.HttpBody) -> ep.ProcessingResponse:
        self.seen.append("request_body")
        return super().request_body(body)

    def response_headers(self, headers: ep.HttpHeaders) -> ep.ProcessingResponse:
        self.seen.append("response_headers")
        return super().response_headers(headers)


class OneProcessor:
    """A registry that records which names it opened."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.processor = Recording()

    def open(self, name: str, hold_seconds: float = 0.0) -> StreamProcessor:
        self.opened.append(name)
        return self.processor


def _service(snapshot: Any = None) -> tuple[ExternalProcessorService, OneProcessor]:
    service = ExternalProcessorService(_gateway(snapshot))
    registry = OneProcessor()
    service.processors = cast(Processors, registry)
    return service, registry


def test_the_stream_opens_its_processor_once_and_sends_each_kind_to_its_hook() -> None:
    service, registry = _service(SimpleNamespace(version=1))
    kinds = ["request_body", "response_headers", "response_body", "response_trailers"]
    replies = _run(
        service, [_headers("v1_chat_completions"), *(_message(k) for k in kinds)], named=gc.PROCESSOR_V1_CHAT
    )
    assert registry.opened == [gc.PROCESSOR_V1_CHAT]
    assert registry.processor.seen == [
        "request_headers:v1_chat_completions",
        "routed:request_headers",
        "request_body",
        "response_headers",
    ]
    assert [reply.WhichOneof("response") for reply in replies] == ["request_headers", *kinds]


def _error_code(reply: ep.ProcessingResponse) -> str:
    return str(json.loads(reply.immediate_response.body)["error"]["code"])


@pytest.mark.parametrize(
    ("route", "named"),
    [
        (None, None),  # no route row
        ("responses", gc.PROCESSOR_V1_CHAT),  # a Codex row on a /v1 cluster would be translated
        ("v1_chat_completions", None),  # a /v1 row on the Codex cluster would go upstream untranslated
        ("v1_chat_completions", gc.PROCESSOR_V1_RESPONSES),
    ],
)
def test_a_row_of_another_processor_is_refused_before_any_processor_opens(route: str | None, named: str | None) -> None:
    service, registry = _service(SimpleNamespace(version=1))
    replies = _run(service, [_headers(route), _message("request_body")], named=named)
    assert _error_code(replies[0]) == "route_not_configured"
    assert registry.opened == [] and registry.processor.seen == []
    assert replies[1].WhichOneof("response") == "request_body"  # anything after passes through


def test_no_snapshot_yet_is_gateway_not_ready() -> None:
    service, registry = _service(None)
    assert _error_code(_run(service, [_headers("readyz")])[0]) == "gateway_not_ready"
    assert registry.opened == []


def test_readyz_through_the_real_registry() -> None:
    service = ExternalProcessorService(_gateway(SimpleNamespace(version=42)))
    reply = _run(service, [_headers("readyz")])[0]
    assert reply.immediate_response.status.code == 200
    assert json.loads(reply.immediate_response.body) == {"status": "ready", "routing_version": 42}


def test_a_failing_request_headers_hook_fails_closed() -> None:
    class Broken(Recording):
        __slots__ = ()

        def request_headers(self, attempt: Attempt) -> ep.ProcessingResponse:
            raise RuntimeError("boom")

    service, registry = _service(SimpleNamespace(version=1))
    registry.processor = Broken()
    reply = _run(service, [_headers("readyz")])
    assert reply[0].immediate_response.status.code == 500 and _error_code(reply[0]) == "internal_error"
