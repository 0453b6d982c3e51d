"""The route table, first match wins: Codex backend routes, gateway-answered paths, admin, MCP, metrics and a
JSON 404 for the rest."""

from __future__ import annotations

from typing import Any

from pooler.envoy_config.fragments import disabled_filters, error_body
from pooler.envoy_config.inputs import GatewayConfig, Upstream
from pooler.envoy_config.lua import WS_VIEW_FILTER, WS_VIEW_SCRIPT
from pooler.envoy_config.surface_routes import build_surface_routes, build_v1_routes
from pooler.envoy_config.timeouts import SSE_IDLE_TIMEOUT, WS_IDLE_TIMEOUT, retry_policy

# The deterministic 404 for every /v1 path the gateway does not serve.
V1_UNSUPPORTED_MESSAGE = (
    "This endpoint is not supported by this gateway; supported: GET /v1/models, POST /v1/responses, "
    "POST /v1/chat/completions, POST /v1/files, POST /v1/audio/transcriptions, POST /v1/images/generations, "
    "POST /v1/images/edits."
)


def _direct(status: int, body: str) -> dict[str, Any]:
    return {
        "direct_response": {"status": status, "body": {"inline_string": body}},
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": "application/json"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def build_routes(config: GatewayConfig) -> list[dict[str, Any]]:
    retry = retry_policy(config.num_retries)
    upstream = "codex_upstream"
    codex = "/backend-api/codex"
    return [
        {"name": "healthz", "match": {"path": "/healthz"}, **_direct(200, '{"status":"ok"}')},
        {"name": "readyz", "match": {"path": "/readyz"}, "route": {"cluster": "gateway_local", "timeout": "5s"}},
        {
            "name": "responses_ws",
            "match": {
                "path": f"{codex}/responses",
                "headers": [{"name": "upgrade", "string_match": {"exact": "websocket", "ignore_case": True}}],
            },
            "route": {
                "cluster": "codex_upstream_ws",
                "timeout": "0s",
                "idle_timeout": WS_IDLE_TIMEOUT,
                "retry_policy": retry,
            },
            # Headers-only on upgrades: body-processing filters on websocket routes are a known hang risk.
            "typed_per_filter_config": {
                **disabled_filters("envoy.filters.http.sse_to_metadata", "envoy.filters.http.lua"),
                # Disabled everywhere else: the pooled view's frame rewriter (WS_VIEW_LUA) streams frames through.
                WS_VIEW_FILTER: {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
                        "name": WS_VIEW_SCRIPT,
                    },
                },
            },
        },
        {
            "name": "responses",
            "match": {"path": f"{codex}/responses"},
            "route": {"cluster": upstream, "timeout": "0s", "idle_timeout": SSE_IDLE_TIMEOUT, "retry_policy": retry},
        },
        {
            "name": "compact",
            "match": {"path": f"{codex}/responses/compact"},
            "route": {"cluster": upstream, "timeout": "0s", "idle_timeout": SSE_IDLE_TIMEOUT, "retry_policy": retry},
        },
        {
            "name": "models",
            "match": {"path": f"{codex}/models"},
            "route": {"cluster": upstream, "timeout": "60s", "retry_policy": retry},
        },
        {
            "name": "codex_other",
            "match": {"prefix": f"{codex}/"},
            "route": {"cluster": upstream, "timeout": "0s", "idle_timeout": SSE_IDLE_TIMEOUT, "retry_policy": retry},
        },
        *build_surface_routes(retry),
        {
            "name": "usage_wham",
            "match": {"path": "/backend-api/wham/usage"},
            "route": {"cluster": "gateway_local", "timeout": "10s"},
        },
        {
            "name": "usage_codex",
            "match": {"path": "/api/codex/usage"},
            "route": {"cluster": "gateway_local", "timeout": "10s"},
        },
        *build_v1_routes(retry),
        {
            "name": "v1",
            "match": {"prefix": "/v1/"},
            **_direct(404, error_body(V1_UNSUPPORTED_MESSAGE, "unsupported_endpoint", "invalid_request_error")),
        },
        {"name": "admin", "match": {"prefix": "/admin"}, "route": {"cluster": "pooler_admin", "timeout": "60s"}},
        # Exact paths: the MCP server (its own bearer tokens) and the ext_proc's Prometheus exposition.
        {"name": "mcp", "match": {"path": "/mcp"}, "route": {"cluster": "pooler_mcp", "timeout": "60s"}},
        {"name": "metrics", "match": {"path": "/metrics"}, "route": {"cluster": "pooler_metrics", "timeout": "10s"}},
        {
            "name": "not_found",
            "match": {"prefix": "/"},
            **_direct(404, error_body("Not found.", "not_found", "invalid_request_error")),
        },
    ]


def with_host_rewrite(routes: list[dict[str, Any]], upstream: Upstream) -> list[dict[str, Any]]:
    """Every route to an upstream cluster sends the upstream's own authority, not the client's Host."""
    for route in routes:
        action = route.get("route")
        if action and action["cluster"].startswith("codex_upstream"):
            action["host_rewrite_literal"] = upstream.authority
    return routes
