"""The clusters the route table's rows send to: the Codex upstream (one per body-reading processor, plus the
HTTP/1.1 websocket cluster) and gateway_local (the ext_proc answers; the internal listener behind it never
should)."""

from __future__ import annotations

from typing import Any

from pooler import route_table as rt
from pooler.envoy_config.inputs import GatewayConfig, Upstream
from pooler.envoy_config.upstream_filters import build_upstream_http_filters

_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Failover is retries: Envoy's default of 3 concurrent retries per cluster would silently stop it.
CIRCUIT_BREAKERS = {
    "thresholds": [
        {"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000, "max_retries": 100000}
    ]
}


def _transport(upstream: Upstream, alpn: list[str]) -> dict[str, Any]:
    if not upstream.tls:
        return {
            "name": "envoy.transport_sockets.raw_buffer",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"},
        }
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": upstream.host,
            "common_tls_context": {
                "alpn_protocols": alpn,
                "validation_context": {
                    "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": upstream.host}}],
                },
            },
        },
    }


def upstream_cluster(config: GatewayConfig, upstream: Upstream, name: str, processor: str | None) -> dict[str, Any]:
    """One Codex upstream cluster. Websockets (`codex_upstream_ws`) need HTTP/1.1 (an HTTP/2 upstream would need
    extended CONNECT); everything else negotiates HTTP/2 over TLS (ALPN) and speaks HTTP/1.1 in cleartext."""
    websocket = name == rt.cluster_name(rt.ROUTES_BY_NAME["responses_ws"])
    options: dict[str, Any] = {"@type": f"type.googleapis.com/{_PROTOCOL_OPTIONS}"}
    if websocket:
        options["explicit_http_config"] = {"http_protocol_options": {}}
    else:
        options["common_http_protocol_options"] = {"idle_timeout": "60s"}
        if upstream.tls:
            options["auto_config"] = {"http_protocol_options": {}, "http2_protocol_options": {}}
        else:
            options["explicit_http_config"] = {"http_protocol_options": {}}
    options["http_filters"] = build_upstream_http_filters(config, processor)
    alpn = ["http/1.1"] if websocket else ["h2", "http/1.1"]
    address = {"socket_address": {"address": upstream.host, "port_value": upstream.port}}
    return {
        "name": name,
        "type": "STATIC" if upstream.is_ip else "LOGICAL_DNS",
        "connect_timeout": "5s",
        "circuit_breakers": CIRCUIT_BREAKERS,
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "transport_socket": _transport(upstream, alpn),
        "typed_extension_protocol_options": {_PROTOCOL_OPTIONS: options},
    }


def gateway_local_cluster(config: GatewayConfig) -> dict[str, Any]:
    """Routes the ext_proc answers itself (readiness, pooled usage, /v1 models): the attempt never needs a real
    upstream, so the endpoint is the internal gateway_local listener (which only answers a JSON 500 if ever
    reached: a bug, never the upstream)."""
    return {
        "name": "gateway_local",
        "type": "STATIC",
        "connect_timeout": "1s",
        "circuit_breakers": CIRCUIT_BREAKERS,
        "load_assignment": {
            "cluster_name": "gateway_local",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": config.local.envoy_address()}}]}],
        },
        "typed_extension_protocol_options": {
            _PROTOCOL_OPTIONS: {
                "@type": f"type.googleapis.com/{_PROTOCOL_OPTIONS}",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": build_upstream_http_filters(config, upstream=False),
            }
        },
    }


def build_route_clusters(
    config: GatewayConfig, upstream: Upstream, routes: tuple[rt.Route, ...] | None = None
) -> list[dict[str, Any]]:
    """Every cluster the routes (default: the whole table) send to, except the bundled deployment's own services."""
    routes = rt.ROUTES if routes is None else routes
    clusters = [upstream_cluster(config, upstream, name, proc) for name, proc in rt.upstream_clusters(routes).items()]
    if any(route.target is rt.Target.LOCAL for route in routes):
        clusters.append(gateway_local_cluster(config))
    return clusters
