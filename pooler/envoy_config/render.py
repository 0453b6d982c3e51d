"""Assembly: every part as plain data, substituted as JSON (YAML flow syntax) into the envoy/envoy.yaml template."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import yaml

from pooler.envoy_config.access_logs import build_access_logs, build_grpc_access_log
from pooler.envoy_config.clusters import build_replica_parts, discovery_type, metrics_cluster, static_cluster
from pooler.envoy_config.http_filters import build_http_filters
from pooler.envoy_config.ingress import build_ingress
from pooler.envoy_config.inputs import GatewayConfig, Upstream
from pooler.envoy_config.local_replies import build_local_reply_mappers
from pooler.envoy_config.parts import error_body
from pooler.envoy_config.routes import build_routes
from pooler.envoy_config.upstream_clusters import build_route_clusters

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml"
# Substituted as they are: block-sequence items (one JSON flow mapping per line) at their template indentation.
RAW_KEYS = {"pooler_http_filters", "route_clusters", "accesslog_standby_localities"}


def _items(values: list[dict[str, Any]], indent: int) -> str:
    return "\n".join(" " * indent + "- " + json.dumps(value) for value in values)


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
        "metrics_cluster": metrics_cluster(config),
        "admin_app_address": config.admin_app.envoy_address(),
        "admin_app_discovery": discovery_type(config.admin_app),
        "buffer_limit_bytes": config.buffer_limit_bytes,
        "access_logs": build_access_logs(config),
        "upstream_logs": [] if config.direct else [build_grpc_access_log(config)],
        "local_reply_mappers": build_local_reply_mappers(),
        **build_ingress(config),
        "routes": build_routes(config.num_retries, upstream),
        "local_fallback_body": error_body("The gateway could not answer this request.", "internal_error"),
    }
    rendered = {k: v if k in RAW_KEYS else json.dumps(v) for k, v in values.items()}
    rendered["pooler_http_filters"] = _items(build_http_filters(), 10)
    rendered["route_clusters"] = _items(build_route_clusters(config, upstream), 2)
    text = string.Template(template if template is not None else TEMPLATE_PATH.read_text()).substitute(rendered)
    yaml.safe_load(text)  # fail here, not in Envoy, if a substitution broke the YAML
    return text
