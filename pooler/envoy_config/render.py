"""Assembly: every part as plain data, substituted as JSON (YAML flow syntax) into the envoy/envoy.yaml template."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import yaml

from pooler.envoy_config.access_logs import build_access_logs, build_grpc_access_log
from pooler.envoy_config.clusters import (
    SURFACE_CLUSTERS,
    V1_CLUSTERS,
    build_replica_parts,
    discovery_type,
    metrics_endpoint,
    static_cluster,
    upstream_parts,
)
from pooler.envoy_config.fragments import error_body
from pooler.envoy_config.header_mutations import build_request_mutations, build_view_response_mutations
from pooler.envoy_config.ingress import build_ingress
from pooler.envoy_config.inputs import GatewayConfig, Upstream
from pooler.envoy_config.local_replies import build_local_reply_mappers
from pooler.envoy_config.lua import REQUEST_SCAN_LUA, WS_VIEW_FILTER, WS_VIEW_LUA
from pooler.envoy_config.routes import build_routes, with_host_rewrite
from pooler.envoy_config.upstream_filters import (
    build_surface_http_filters,
    build_upstream_http_filters,
    build_v1_http_filters,
)
from pooler.envoy_config.usage_metadata import build_usage_rules

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml"
# Substituted as they are, not JSON-quoted: the template uses these as mapping keys.
RAW_KEYS = {"upstream_protocol_key"}


def render(config: GatewayConfig, template: str | None = None) -> str:
    """The Envoy bootstrap YAML for `config`. Pure: same input, same text."""
    if config.num_retries < 0:
        raise ValueError("num_retries must be >= 0")
    upstream = Upstream.parse(config.upstream_url)
    values: dict[str, Any] = {
        "admin_address": config.admin.envoy_address(),
        "listen_address": config.listen.envoy_address(),
        "local_address": config.local.envoy_address(),
        **build_replica_parts(config),
        "mcp_cluster": static_cluster("pooler_mcp", config.mcp_app),
        "metrics_cluster": static_cluster("pooler_metrics", metrics_endpoint(config)),
        "admin_app_address": config.admin_app.envoy_address(),
        "admin_app_discovery": discovery_type(config.admin_app),
        "buffer_limit_bytes": config.buffer_limit_bytes,
        "access_logs": build_access_logs(config),
        "upstream_logs": [] if config.direct else [build_grpc_access_log(config)],
        "local_reply_mappers": build_local_reply_mappers(),
        "strip_envoy_headers": build_request_mutations(),
        "view_response_mutations": build_view_response_mutations(),
        "request_scan_lua": REQUEST_SCAN_LUA,
        "ws_view_lua": WS_VIEW_LUA,
        "ws_view_filter": WS_VIEW_FILTER,
        **build_ingress(config),
        **{f"{name}_http_filters": build_surface_http_filters(config, name) for name in SURFACE_CLUSTERS},
        "usage_rules": build_usage_rules(),
        "routes": with_host_rewrite(build_routes(config), upstream),
        "local_fallback_body": error_body("The gateway could not answer this request.", "internal_error"),
        "upstream_http_filters": build_upstream_http_filters(config),
        **{f"{name}_http_filters": build_v1_http_filters(config, name) for name in V1_CLUSTERS},
        **upstream_parts(upstream),
    }
    rendered = {k: v if k in RAW_KEYS else json.dumps(v) for k, v in values.items()}
    text = string.Template(template if template is not None else TEMPLATE_PATH.read_text()).substitute(rendered)
    yaml.safe_load(text)  # fail here, not in Envoy, if a substitution broke the YAML
    return text
