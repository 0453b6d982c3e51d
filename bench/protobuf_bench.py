"""Parse/serialise one ext_proc ProcessingRequest/ProcessingResponse: upb (xds-protos) vs betterproto2
(envoy-data-plane). Run: .venv/bin/python -m bench.protobuf_bench"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3 import external_processor_pb2 as upb

HEADERS = [
    (":method", "POST"),
    (":path", "/backend-api/codex/responses"),
    (":authority", "127.0.0.1:8080"),
    (":scheme", "http"),
    ("authorization", "Bearer cpk_abcdefgh_" + "x" * 43),
    ("content-type", "application/json"),
    ("accept", "text/event-stream"),
    ("session-id", "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
    ("thread-id", "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
    ("originator", "codex_exec"),
    ("x-codex-window-id", "w-1"),
    ("x-request-id", "5f50a9dc-62d0-45c8-8be5-10b4a0f7d828"),
    ("version", "0.169.0"),
]


def per_call_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def sample_response() -> upb.ProcessingResponse:
    """What the processor returns for a routed attempt: bearer + account header set, routing metadata."""
    from extproc.responses import forward

    routing = {"pool_id": 1, "key_id": 2, "key_prefix": "cpk_abcdefgh", "tried": [3], "account_id": 3}
    return forward({"authorization": "Bearer " + "t" * 900, "chatgpt-account-id": "acct-1"}, ["x-api-key"], routing)


def upb_case() -> tuple[float, float]:
    req = upb.ProcessingRequest(
        request_headers=upb.HttpHeaders(
            headers=HeaderMap(headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in HEADERS])
        )
    )
    wire = req.SerializeToString()
    resp = sample_response()
    return per_call_us(lambda: upb.ProcessingRequest.FromString(wire), 20000), per_call_us(
        resp.SerializeToString, 20000
    )


def betterproto_case(wire: bytes) -> tuple[float, float] | None:
    try:
        from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingRequest, ProcessingResponse
    except ImportError:
        return None
    parse = per_call_us(lambda: ProcessingRequest.parse(wire), 300)
    resp_wire = sample_response().SerializeToString()
    built = ProcessingResponse.parse(resp_wire)
    return parse, per_call_us(lambda: bytes(built), 300)


def main() -> None:
    wire = upb.ProcessingRequest(
        request_headers=upb.HttpHeaders(
            headers=HeaderMap(headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in HEADERS])
        )
    ).SerializeToString()
    upb_parse, upb_ser = upb_case()
    print(f"python {platform.python_version()} on {platform.machine()}, {len(HEADERS)} headers, {len(wire)} bytes")
    print(f"upb (xds-protos)          parse request {upb_parse:8.2f} us   serialise response {upb_ser:8.2f} us")
    other = betterproto_case(wire)
    if other is not None:
        print(f"betterproto2 (envoy-data-plane) parse {other[0]:8.2f} us   serialise response {other[1]:8.2f} us")


if __name__ == "__main__":
    main()
