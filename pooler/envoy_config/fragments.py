"""Fragments for an Envoy the team already runs (`pooler envoy-config --fragments DIR`).

Each file is standalone YAML with a comment header saying where it goes. Every piece is the bundled config's
own (rendered from the same builders and the route table), minus what belongs to the bundled deployment only:
the admin, MCP and metrics routes, the catch-all 404, /healthz, the client allowlist and its 403 mapper.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.envoy_config.access_logs import build_grpc_access_log
from pooler.envoy_config.http_filters import build_http_filters
from pooler.envoy_config.inputs import GatewayConfig, Upstream
from pooler.envoy_config.local_replies import build_local_reply_mappers, pooler_requests
from pooler.envoy_config.render import render
from pooler.envoy_config.routes import build_routes
from pooler.envoy_config.upstream_clusters import build_route_clusters

GRACEFUL_CLOSE_RUNTIME_KEY = "envoy.reloadable_features.ext_proc_graceful_grpc_close"

_HEADERS = {
    "clusters.yaml": (
        "A list of clusters: append them to static_resources.clusters (or serve them through your CDS). The\n"
        "Codex upstream clusters (one per body-reading processor, one HTTP/1.1 for websockets), gateway_local\n"
        "(routes the ext_proc answers itself) and the ext_proc and access-log clusters."
    ),
    "http_filters.yaml": (
        "A list of HTTP filters: insert them, in this order, into your HTTP connection manager's http_filters,\n"
        "right before your router filter. All but `pooler.request_id` and `pooler.usage` are off by default and\n"
        "turned on only by the pooler's routes; `pooler.request_id` only copies x-request-id into filter state\n"
        "(the pooler's access log reads it there), `pooler.usage` only reads SSE responses into the pooler.usage\n"
        "metadata namespace."
    ),
    "routes.yaml": (
        "A list of routes: put them into one of your virtual hosts (the one your clients reach), before any\n"
        "route that would match these paths (e.g. a catch-all `prefix: /`). They match only the pooler's paths:\n"
        "/backend-api/codex/, /backend-api/{files,transcribe,images,wham/usage}, /api/codex/usage, /readyz and\n"
        "/v1/ (every other /v1/ path answers a JSON 404); use a virtual host of their own if yours serves these.\n"
        "Each sets x-pooler-route; the ext_proc refuses any request that did not come through one of them."
    ),
    "local_reply.yaml": (
        "local_reply_config.mappers of your HTTP connection manager: put these first in its `mappers` list.\n"
        "They only match requests of the pooler's routes (the x-pooler-route header or the request scanner's\n"
        "mark): an unreachable ext_proc becomes a JSON 503 gateway_unavailable, upstream failures 502/504 JSON."
    ),
    "listeners.yaml": (
        "A list of listeners: append to static_resources.listeners. gateway_local is the endpoint of the\n"
        "gateway_local cluster; the ext_proc answers those routes itself, so it only answers a JSON 500 if a\n"
        "request ever reaches it (a bug), never the upstream. It listens on a unix socket Envoy can create."
    ),
    "runtime.yaml": (
        "A runtime layer: add it to layered_runtime.layers (or set the key in your static layer). The pooler's\n"
        "ext_proc filters tell the ext_proc they close streams gracefully; without this key Envoy resets each\n"
        "stream instead, which works but leaks ~80 bytes per request in grpcio (grpc/grpc#43360)."
    ),
    "access_log.yaml": (
        "Two entries of one gRPC access log to the ext_proc (quota evidence, request logs): add `access_log` to\n"
        "your HTTP connection manager's access_log list and `upstream_log` to your router filter's\n"
        "upstream_log list (one entry per upstream attempt: which account answered what). Identical configs, so\n"
        "Envoy shares one stream (the filters differ: only the pooler's requests, only attempts the ext_proc\n"
        "routed to an account, are logged)."
    ),
}
FRAGMENT_FILES = tuple(_HEADERS)


def build_fragments(config: GatewayConfig) -> dict[str, Any]:
    """File name -> its content as plain data."""
    upstream = Upstream.parse(config.upstream_url)
    routes = rt.fragment_routes()
    bundled = yaml.safe_load(render(config))
    resources = bundled["static_resources"]
    own = {c["name"]: c for c in resources["clusters"] if c["name"] in ("pooler_extproc", "pooler_accesslog")}
    listener = next(li for li in resources["listeners"] if li["name"] == "gateway_local")
    access_log = {**build_grpc_access_log(config), "filter": pooler_requests()}
    # Upstream attempts carry the account the ext_proc set (the routing metadata is not in an attempt's own
    # stream info): attempts of the team's other routes are never sent to the ext_proc.
    attempt_log = {
        **build_grpc_access_log(config),
        "filter": {"header_filter": {"header": {"name": gc.ACCOUNT_ID_HEADER, "present_match": True}}},
    }
    return {
        "clusters.yaml": [
            *build_route_clusters(config, upstream, routes),
            own["pooler_extproc"],
            own["pooler_accesslog"],
        ],
        "http_filters.yaml": build_http_filters(),
        "routes.yaml": build_routes(config.num_retries, upstream, routes),
        "local_reply.yaml": {"mappers": build_local_reply_mappers(client_allowlist=False)},
        "listeners.yaml": [listener],
        "runtime.yaml": {"name": "pooler", "static_layer": {GRACEFUL_CLOSE_RUNTIME_KEY: True}},
        "access_log.yaml": {"access_log": [access_log], "upstream_log": [attempt_log]},
    }


def render_fragments(config: GatewayConfig) -> dict[str, str]:
    """File name -> YAML text with its comment header. Pure: same input, same text."""
    out: dict[str, str] = {}
    for name, data in build_fragments(config).items():
        header = "".join(f"# {line}\n" for line in _HEADERS[name].splitlines())
        text = yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, width=120)
        out[name] = f"# Codex Pooler fragment {name}: rendered by `pooler envoy-config --fragments`.\n{header}{text}"
    return out
