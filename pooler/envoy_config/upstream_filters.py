"""Upstream HTTP filters per cluster: the ext_proc (fail closed; headers only, plus the body phases a
body-reading processor needs, from its ProcessorSpec in the route table) before the upstream codec."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.inputs import GatewayConfig
from pooler.envoy_config.lua import UPSTREAM_ERRORS_LUA
from pooler.envoy_config.parts import duration
from pooler.route_table import PROCESSORS

_CODEC = {
    "name": "envoy.filters.http.upstream_codec",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
}
UPSTREAM_ERRORS_FILTER = "pooler.upstream_errors"
"""Lua, per attempt: what a non-2xx answer's body says, for the access log (envoy_config/lua/upstream_errors.lua).
Measured choice over a response phase of the ext_proc: no gRPC message at all on a 2xx, and no body read."""
_UPSTREAM_ERRORS = {
    "name": UPSTREAM_ERRORS_FILTER,
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": UPSTREAM_ERRORS_LUA},
    },
}


def build_upstream_http_filters(
    config: GatewayConfig, processor: str | None = None, graceful_close: bool = True, upstream: bool = True
) -> list[dict[str, Any]]:
    """The ext_proc for one cluster, then (`upstream`: a cluster of the real upstream, not gateway_local) the
    error reader. `processor`: the body-reading processor of the cluster's routes (None: headers only), named
    to the ext_proc as gRPC initial metadata. `graceful_close`: the Envoy runs with the runtime key
    `ext_proc_graceful_grpc_close` on (see envoy/envoy.yaml)."""
    if config.direct:  # the benchmark baseline has no ext_proc on any cluster
        return [_CODEC]
    timeout = duration(config.extproc_timeout_seconds)
    metadata: list[dict[str, str]] = []
    if graceful_close:
        metadata.append({"key": gc.STREAM_CLOSE_METADATA_KEY, "value": gc.STREAM_CLOSE_GRACEFUL})
    mode = {
        "request_header_mode": "SEND",
        "response_header_mode": "SKIP",
        "request_body_mode": "NONE",
        "response_body_mode": "NONE",
        "request_trailer_mode": "SKIP",
        "response_trailer_mode": "SKIP",
    }
    receiving = [gc.NS_ROUTING]
    extra: dict[str, Any] = {}
    if processor is not None:
        spec = PROCESSORS[processor]
        # Picked once per stream by this name: a retried attempt sees the :path an earlier attempt rewrote.
        metadata.append({"key": gc.PROCESSOR_METADATA_KEY, "value": processor})
        if spec.request_body:
            mode["request_body_mode"] = "BUFFERED"
        if spec.response_headers:
            mode["response_header_mode"] = "SEND"
        if spec.response_body:
            mode["response_body_mode"] = "BUFFERED"
        if spec.mode_override:
            extra["allow_mode_override"] = True  # the response body mode is chosen per response
        if spec.receives_usage:
            receiving.append(gc.NS_USAGE)
    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": "pooler_extproc"}, "timeout": timeout}
    if metadata:
        grpc_service["initial_metadata"] = metadata
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
                "processing_mode": mode,
                **extra,
                "metadata_options": {
                    # NS_ROUTING: the principal and tried accounts of earlier attempts; NS_REQUEST: the request scanner.
                    "forwarding_namespaces": {"untyped": [gc.NS_ROUTING, gc.NS_REQUEST]},
                    "receiving_namespaces": {"untyped": receiving},
                },
            },
        },
        *([_UPSTREAM_ERRORS] if upstream else []),
        _CODEC,
    ]
