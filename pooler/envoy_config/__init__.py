"""Renders envoy/envoy.yaml: a pure function from a small typed input to the YAML text Envoy loads.

The template holds the shape; this package builds the parts that vary (addresses, the upstream's TLS and
protocol, routes, retry policy, the ext_proc filter, access logs, local-reply mappers) as plain data and
substitutes them as JSON, which is YAML flow syntax. Every name shared with the ext_proc comes from
pooler.gateway_contract, so the two can never disagree.

The routes and their clusters come from the route table (pooler/route_table.py). One module per concern:
`inputs` (GatewayConfig, config_from_env), `routes` (one Envoy route per row), `upstream_clusters` (the rows'
clusters), `upstream_filters` (the ext_proc per cluster), `clusters` (the ext_proc/access-log/MCP/metrics
endpoints), `http_filters` (the connection manager's pooler filters) with `header_mutations`, `lua` and
`usage_metadata`, `local_replies`, `access_logs`, `ingress`, `timeouts` (the retry policy), `render` (the
bundled config), `fragments` (the pieces for an existing Envoy) and `istio` (the Istio gateway manifests,
from the fragments). Callers import from here.
"""

from __future__ import annotations

from pooler.envoy_config.access_logs import (
    LOG_REQUEST_HEADERS,
    QUOTA_RESPONSE_HEADERS,
    build_access_logs,
    build_grpc_access_log,
)
from pooler.envoy_config.clusters import (
    DEFAULT_METRICS_PORT,
    build_replica_parts,
    discovery_type,
    metrics_endpoint,
    metrics_socket_for,
)
from pooler.envoy_config.header_mutations import (
    ENVOY_CONTROL_HEADERS,
    build_request_mutations,
    build_view_response_mutations,
)
from pooler.envoy_config.http_filters import (
    HEADERS_FILTER,
    POOLER_FILTERS,
    REQUEST_SCAN_FILTER,
    USAGE_FILTER,
    WS_USAGE_FILTER,
    WS_VIEW_FILTER,
    build_http_filters,
)
from pooler.envoy_config.ingress import build_ingress
from pooler.envoy_config.inputs import (
    DEFAULT_NUM_RETRIES,
    DEFAULT_UPSTREAM_URL,
    Endpoint,
    ExtprocOptions,
    ExtprocTls,
    GatewayConfig,
    Upstream,
    config_from_env,
    num_retries_for,
    with_extproc_options,
)
from pooler.envoy_config.istio import build_istio, istio_gateway_config, render_istio
from pooler.envoy_config.local_replies import build_local_reply_mappers
from pooler.envoy_config.lua import REQUEST_SCAN_LUA, WS_USAGE_LUA, WS_USAGE_SCRIPT, WS_VIEW_LUA, WS_VIEW_SCRIPT
from pooler.envoy_config.render import RAW_KEYS, TEMPLATE_PATH, render
from pooler.envoy_config.routes import V1_UNSUPPORTED_MESSAGE, build_route, build_routes
from pooler.envoy_config.timeouts import (
    PER_TRY_IDLE_TIMEOUT,
    RETRY_BASE_INTERVAL,
    RETRY_MAX_INTERVAL,
    SSE_IDLE_TIMEOUT,
    WS_IDLE_TIMEOUT,
)
from pooler.envoy_config.upstream_clusters import build_route_clusters, gateway_local_cluster, upstream_cluster
from pooler.envoy_config.upstream_filters import build_upstream_http_filters
from pooler.envoy_config.usage_metadata import build_usage_rules

__all__ = [
    "DEFAULT_METRICS_PORT",
    "DEFAULT_NUM_RETRIES",
    "DEFAULT_UPSTREAM_URL",
    "ENVOY_CONTROL_HEADERS",
    "HEADERS_FILTER",
    "LOG_REQUEST_HEADERS",
    "PER_TRY_IDLE_TIMEOUT",
    "POOLER_FILTERS",
    "QUOTA_RESPONSE_HEADERS",
    "RAW_KEYS",
    "REQUEST_SCAN_FILTER",
    "REQUEST_SCAN_LUA",
    "RETRY_BASE_INTERVAL",
    "RETRY_MAX_INTERVAL",
    "SSE_IDLE_TIMEOUT",
    "TEMPLATE_PATH",
    "USAGE_FILTER",
    "V1_UNSUPPORTED_MESSAGE",
    "WS_IDLE_TIMEOUT",
    "WS_USAGE_FILTER",
    "WS_USAGE_LUA",
    "WS_USAGE_SCRIPT",
    "WS_VIEW_FILTER",
    "WS_VIEW_LUA",
    "WS_VIEW_SCRIPT",
    "Endpoint",
    "ExtprocOptions",
    "ExtprocTls",
    "GatewayConfig",
    "Upstream",
    "build_access_logs",
    "build_grpc_access_log",
    "build_http_filters",
    "build_ingress",
    "build_istio",
    "build_local_reply_mappers",
    "build_replica_parts",
    "build_request_mutations",
    "build_route",
    "build_route_clusters",
    "build_routes",
    "build_upstream_http_filters",
    "build_usage_rules",
    "build_view_response_mutations",
    "config_from_env",
    "discovery_type",
    "gateway_local_cluster",
    "istio_gateway_config",
    "metrics_endpoint",
    "metrics_socket_for",
    "num_retries_for",
    "render",
    "render_istio",
    "upstream_cluster",
    "with_extproc_options",
]
