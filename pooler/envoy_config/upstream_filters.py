"""Upstream HTTP filters per cluster: the ext_proc (fail closed; headers only, plus the body phases a
body-reading processor needs, from its ProcessorSpec in the route table; on the first-event hold's cluster it
fails open behind the decision guard), then the attempt's request id onto its response (for the per-attempt
access log), before the upstream codec."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.clusters import several_extprocs
from pooler.envoy_config.inputs import GatewayConfig
from pooler.envoy_config.lua import DECISION_GUARD_LUA, INSTALLATION_BODY_LUA, UPSTREAM_ERRORS_LUA
from pooler.envoy_config.parts import duration
from pooler.gateway.ratelimit_view import WS_VIEW_KEY, WS_VIEW_RESPONSE_HEADER
from pooler.route_table import PROCESSORS

ATTEMPT_OF_FILTER = "pooler.attempt_of"
HOLD_SHARE = 0.75
"""The first-event hold deadline as a share of the ext_proc's message_timeout."""


def _response_header(key: str, value: str) -> dict[str, Any]:
    return {
        "append": {
            "header": {"key": key, "value": value},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            "keep_empty_value": False,
        }
    }


# Upstream filters read the request's own stream info (measured: the same request id as the downstream entry's,
# and the ext_proc's metadata of this attempt), unlike the router's upstream log, whose filter state is the
# upstream connection's. On each attempt's response: its request and account (for the per-attempt access log),
# and the pooled view the ext_proc computed (NS_VIEW: for the downstream header_mutation, and the websocket frame
# view for the websocket route's Lua filter). All removed before the client, and so is the account's set-cookie.
_ATTEMPT_OF = {
    "name": ATTEMPT_OF_FILTER,
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {
            "response_mutations": [
                _response_header(
                    gc.ATTEMPT_OF_HEADER,
                    f"%FILTER_STATE({gc.REQUEST_ID_FILTER_STATE}:PLAIN)% "
                    f"%DYNAMIC_METADATA({gc.NS_ROUTING}:{gc.ROUTING_ACCOUNT_ID})%",
                ),
                *(
                    _response_header(gc.view_response_header(key), f"%DYNAMIC_METADATA({gc.NS_VIEW}:{key})%")
                    for key in gc.VIEW_HEADERS.values()
                ),
                _response_header(WS_VIEW_RESPONSE_HEADER, f"%DYNAMIC_METADATA({gc.NS_VIEW}:{WS_VIEW_KEY})%"),
                # A cookie an account's answer sets (Cloudflare's __cf_bm) is that account's: a client that kept
                # it would hold account-bound state and show it to whichever account serves it next (the
                # ext_proc drops a client's `cookie` anyway). The gateway's own calls keep cookies per account.
                {"remove": "set-cookie"},
            ]
        },
    },
}
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

DECISION_GUARD_FILTER = "pooler.decision_guard"
"""Lua, per attempt, request side, right after an ext_proc that fails open: refuses an attempt the ext_proc did
not decide (envoy_config/lua/decision_guard.lua)."""
_DECISION_GUARD = {
    "name": DECISION_GUARD_FILTER,
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": DECISION_GUARD_LUA},
    },
}

INSTALLATION_BODY_FILTER = "pooler.installation_body"
"""Lua, per attempt, request side: the client's installation id in a JSON body becomes the attempt's account's
(envoy_config/lua/installation_body.lua), as the ext_proc does in the headers."""
_INSTALLATION_BODY = {
    "name": INSTALLATION_BODY_FILTER,
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": INSTALLATION_BODY_LUA},
    },
}


# Several ext_proc processes: a stream the chosen one cannot take (it was just killed, or is gone before the
# health check noticed: connect failure, reset) is retried on another at once (previous_hosts), instead of
# the client getting 503 gateway_unavailable. Only before the ext_proc answered anything (Envoy retries a
# stream only until response headers arrive), so no decision is applied twice; the dead process's state
# (in-flight counts, unsaved pins) died with it. Measured: SIGKILL of one of two workers under c=8 cost 53
# clients a 503 without this, none with it (tests/integration/test_workers.py).
EXTPROC_RETRY: dict[str, Any] = {
    # cancelled/unavailable: a gRPC status without a message (a server stopping refuses a stream that way).
    "retry_on": "connect-failure,refused-stream,reset,cancelled,unavailable",
    "num_retries": 3,
    "retry_back_off": {"base_interval": "0.005s", "max_interval": "0.05s"},
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    # Least-request favours a just-killed process until the health check takes it out (up to an interval): its
    # streams are gone, so it looks idle beside a live one busy with held turns, and two-choice sampling over
    # two hosts picks it 3 times in 4. With 3 re-picks per retry an Envoy debug log showed all 4 attempts of a
    # decision stream refused by a SIGKILLed worker's socket within 16 ms (the turn failed 503); with 20, no
    # stream in the same test needed more than one retry. (Outlier detection ejected that worker at once, but
    # the load balancer kept picking it for the next 0.3-0.6 s, so it is not used.)
    "host_selection_retry_max_attempts": 20,
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
    receiving = [gc.NS_ROUTING, gc.NS_VIEW]
    extra: dict[str, Any] = {}
    guard: list[dict[str, Any]] = []
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
        if spec.first_event and config.first_event_hold:
            # The first-event hold (extproc/first_event.py): the body streams to the ext_proc while it holds the
            # headers (measured: DESIGN, 2026-12-04); it must answer before `message_timeout` (a held message
            # past it is a 504), so its own deadline is a share of it, the rest a margin for a loaded event loop.
            mode["response_header_mode"] = "SEND"
            mode["response_body_mode"] = "STREAMED"
            extra["send_body_without_waiting_for_header_response"] = True
            metadata.append(
                {"key": gc.HOLD_METADATA_KEY, "value": str(int(config.extproc_timeout_seconds * 1000 * HOLD_SHARE))}
            )
            # Fail open, so that a process that dies holding an answer lets it through (Envoy does not retry an
            # upstream filter's local reply: failing closed cost 4 turns per SIGKILLed worker); the guard keeps
            # the request side closed. One stream per attempt: a hold filter of its own cost ~40% throughput.
            extra["failure_mode_allow"] = True
            guard = [_DECISION_GUARD]
        if spec.mode_override:
            extra["allow_mode_override"] = True  # the response body mode is chosen per response
        if spec.receives_usage:
            receiving.append(gc.NS_USAGE)
    grpc_service = _extproc_service(config, metadata)
    return [
        {
            "name": "envoy.filters.http.ext_proc",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
                "grpc_service": grpc_service,
                # Fail closed: without the ext_proc's decision there is no account token to send, and the client
                # must get a fast JSON 503 (local_reply maps this 500), never the upstream with its Pool key
                # (where it fails open, `extra`, the decision guard refuses instead).
                "failure_mode_allow": False,
                # Envoy's default rules ignore mutations of x-envoy-* headers: the ext_proc removes those Envoy
                # (or a proxy in front) added, which the upstream must never see (pooler/gateway/upstream_identity.py).
                "mutation_rules": {"allow_envoy": True},
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
        *guard,
        # The attempt's response names its request for the per-attempt access log (x-request-id, which the log
        # would read, never reaches the upstream: pooler/gateway/upstream_identity.py).
        _ATTEMPT_OF,
        *([_INSTALLATION_BODY, _UPSTREAM_ERRORS] if upstream else []),
        _CODEC,
    ]


def _extproc_service(config: GatewayConfig, metadata: list[dict[str, str]]) -> dict[str, Any]:
    service: dict[str, Any] = {
        "envoy_grpc": {"cluster_name": "pooler_extproc"},
        "timeout": duration(config.extproc_timeout_seconds),
    }
    if several_extprocs(config):
        service["retry_policy"] = EXTPROC_RETRY
    if metadata:
        service["initial_metadata"] = metadata
    return service
