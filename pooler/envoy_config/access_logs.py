"""Access logs: the gRPC log to the ext_proc (downstream and per attempt) and the optional metadata-only file log."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.inputs import GatewayConfig
from pooler.envoy_config.parts import duration

# Response headers the gRPC access log carries to Python (quota evidence).
_QUOTA_WINDOW_HEADERS = tuple(
    f"x-codex-{slot}-{field_name}"
    for slot in ("primary", "secondary")
    for field_name in ("used-percent", "window-minutes", "reset-at", "reset-after-seconds")
)
QUOTA_RESPONSE_HEADERS = (*_QUOTA_WINDOW_HEADERS, "x-codex-active-limit", "x-codex-plan-type", "retry-after")
# The request an attempt belongs to (set on the attempt's response by the upstream filter chain; see
# envoy_config.upstream_filters), the quota evidence, the upstream error reader's findings, and the content type
# (an SSE answer that ends without `response.completed` was cut).
LOG_RESPONSE_HEADERS = (
    *QUOTA_RESPONSE_HEADERS,
    gc.ATTEMPT_OF_HEADER,
    gc.UPSTREAM_ERROR_HEADER,
    gc.ACTIVE_LIMIT_HEADER,
    "content-type",
)
LOG_REQUEST_HEADERS = ("upgrade",)


ACCESSLOG_RETRY: dict[str, Any] = {
    "retry_on": "connect-failure,refused-stream",
    "num_retries": 2,
    "retry_back_off": {"base_interval": "0.005s", "max_interval": "0.05s"},
    "retry_priority": {
        "name": "envoy.retry_priorities.previous_priorities",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3."
            "PreviousPrioritiesConfig",
            "update_frequency": 1,
        },
    },
}


def _metadata(ns: str, key: str) -> str:
    return f"%DYNAMIC_METADATA({ns}:{key})%"


def build_grpc_access_log(config: GatewayConfig) -> dict[str, Any]:
    """The gRPC access log to the ext_proc process. Used for both the downstream and the upstream (per attempt)
    log with the identical config, so Envoy shares one logger: one buffer, one stream, entries in order."""
    return {
        "name": "envoy.access_loggers.http_grpc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {
                "log_name": "pooler",
                "transport_api_version": "V3",
                "grpc_service": {
                    "envoy_grpc": {"cluster_name": "pooler_accesslog"},
                    # A receiver that just died (its health check has not noticed yet) refuses the connection: the
                    # flush goes to the standby at once instead of being dropped. Not on a reset: an access-log
                    # stream lives long and only the entries not yet written would be sent again.
                    **({"retry_policy": ACCESSLOG_RETRY} if config.receiver_slots else {}),
                },
                "buffer_flush_interval": duration(config.accesslog_flush_seconds),
                "buffer_size_bytes": 65536,
                # The request id of downstream entries: x-request-id never reaches the upstream, and the log
                # reads the same header map (attempts carry it in ATTEMPT_OF_HEADER instead).
                "filter_state_objects_to_log": [gc.REQUEST_ID_FILTER_STATE],
            },
            "additional_request_headers_to_log": list(LOG_REQUEST_HEADERS),
            "additional_response_headers_to_log": list(LOG_RESPONSE_HEADERS),
        },
    }


def build_access_logs(config: GatewayConfig) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = [] if config.direct else [build_grpc_access_log(config)]
    if config.access_log_path:
        # Metadata only: no request/response headers beyond ids, never authorization or bodies.
        fmt = {
            "time": "%START_TIME%",
            "request_id": f"%FILTER_STATE({gc.REQUEST_ID_FILTER_STATE}:PLAIN)%",
            "method": "%REQ(:METHOD)%",
            "path": "%REQ(:PATH)%",
            "status": "%RESPONSE_CODE%",
            "flags": "%RESPONSE_FLAGS%",
            "details": "%RESPONSE_CODE_DETAILS%",
            "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
            "ttfb_ms": "%RESPONSE_DURATION%",
            "duration_ms": "%DURATION%",
            "pool_id": _metadata(gc.NS_ROUTING, gc.ROUTING_POOL_ID),
            "key_prefix": _metadata(gc.NS_ROUTING, gc.ROUTING_KEY_PREFIX),
            "account_id": _metadata(gc.NS_ROUTING, gc.ROUTING_ACCOUNT_ID),
            "tried": _metadata(gc.NS_ROUTING, gc.ROUTING_TRIED),
            "error": _metadata(gc.NS_ROUTING, gc.ROUTING_ERROR),
            "model": _metadata(gc.NS_REQUEST, gc.REQUEST_MODEL),
            "total_tokens": _metadata(gc.NS_USAGE, "total_tokens"),
        }
        logs.append(
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": config.access_log_path,
                    "log_format": {"json_format": fmt},
                },
            }
        )
    return logs
