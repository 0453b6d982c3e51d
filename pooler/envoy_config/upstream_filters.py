"""Upstream HTTP filters per cluster: the ext_proc (fail closed, headers only on Codex routes, plus the body
phases the /v1 and issue-10 processors need) before the upstream codec."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.fragments import duration
from pooler.envoy_config.inputs import GatewayConfig


def build_upstream_http_filters(config: GatewayConfig, graceful_close: bool = True) -> list[dict[str, Any]]:
    """`graceful_close`: the Envoy runs with our bootstrap's runtime (`ext_proc_graceful_grpc_close` on, see
    envoy/envoy.yaml); false for an Envoy configured elsewhere (the Istio EnvoyFilter)."""
    timeout = duration(config.extproc_timeout_seconds)
    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": "pooler_extproc"}, "timeout": timeout}
    if graceful_close:
        grpc_service["initial_metadata"] = [{"key": gc.STREAM_CLOSE_METADATA_KEY, "value": gc.STREAM_CLOSE_GRACEFUL}]
    codec = {
        "name": "envoy.filters.http.upstream_codec",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
    }
    if config.direct:
        return [codec]
    return [
        {
            "name": "envoy.filters.http.ext_proc",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
                "grpc_service": grpc_service,
                # Fail closed: without the ext_proc's decision there is no account token to send, and the client
                # must get a fast JSON 503 (local_reply maps this 500), never the upstream with its Pool key.
                "failure_mode_allow": False,
                "message_timeout": timeout,
                # One synchronous message per attempt: request headers only.
                "processing_mode": {
                    "request_header_mode": "SEND",
                    "response_header_mode": "SKIP",
                    "request_body_mode": "NONE",
                    "response_body_mode": "NONE",
                    "request_trailer_mode": "SKIP",
                    "response_trailer_mode": "SKIP",
                },
                "metadata_options": {
                    # NS_ROUTING: the principal and tried accounts of earlier attempts; NS_REQUEST: the request scanner.
                    "forwarding_namespaces": {"untyped": [gc.NS_ROUTING, gc.NS_REQUEST]},
                    "receiving_namespaces": {"untyped": [gc.NS_ROUTING]},
                },
            },
        },
        codec,
    ]


def build_v1_http_filters(config: GatewayConfig, processor: str) -> list[dict[str, Any]]:
    """The upstream filters of a /v1 cluster: the same ext_proc (same auth and account pick on request headers)
    plus the body phases the translation needs. `processor` travels as gRPC initial metadata so the ext_proc
    picks the /v1 processor on every attempt (a retried attempt sees the rewritten Codex :path)."""
    filters = build_upstream_http_filters(config)
    if config.direct:  # the benchmark baseline has no ext_proc on any cluster
        return filters
    ext = filters[0]["typed_config"]
    _name_processor(ext, processor)
    ext["processing_mode"] = {
        **ext["processing_mode"],
        "request_body_mode": "BUFFERED",  # translated and replaced by the ext_proc
        "response_header_mode": "SEND",  # picks the response body mode (STREAMED or BUFFERED) per response
    }
    ext["allow_mode_override"] = True
    ext["metadata_options"]["receiving_namespaces"]["untyped"] = [gc.NS_ROUTING, gc.NS_USAGE]
    return filters


def build_surface_http_filters(config: GatewayConfig, processor: str) -> list[dict[str, Any]]:
    """Upstream filters of the issue-10 body clusters: the same ext_proc (auth, pick on request headers) plus the
    phases the processor needs - files: response headers + buffered response body (pin, URL check); /v1 files:
    also the request body; /v1 audio: the request body only."""
    filters = build_upstream_http_filters(config)
    if config.direct:
        return filters
    ext = filters[0]["typed_config"]
    _name_processor(ext, processor)
    mode = dict(ext["processing_mode"])
    if processor in (gc.PROCESSOR_FILES, gc.PROCESSOR_V1_FILES):
        mode.update(response_header_mode="SEND", response_body_mode="BUFFERED")
    if processor in (gc.PROCESSOR_V1_FILES, gc.PROCESSOR_V1_AUDIO):
        mode["request_body_mode"] = "BUFFERED"
    ext["processing_mode"] = mode
    return filters


def _name_processor(ext_proc: dict[str, Any], processor: str) -> None:
    """The processor for this filter's streams, as gRPC initial metadata (after any the base filter sends)."""
    metadata = ext_proc["grpc_service"].setdefault("initial_metadata", [])
    metadata.append({"key": gc.PROCESSOR_METADATA_KEY, "value": processor})
