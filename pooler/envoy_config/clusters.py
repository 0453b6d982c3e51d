"""Clusters: the /v1 and issue-10 body clusters by processor, the upstream's address, TLS and protocol, the
ext_proc/access-log replica endpoints, and the static MCP and metrics clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pooler import gateway_contract as gc
from pooler.envoy_config.fragments import duration
from pooler.envoy_config.inputs import Endpoint, GatewayConfig, Upstream

# /v1 (pooler/v1): ext_proc processor name -> cluster (routes.py answers every other /v1 path with a 404).
V1_CLUSTERS = {gc.PROCESSOR_V1_RESPONSES: "codex_upstream_v1_responses", gc.PROCESSOR_V1_CHAT: "codex_upstream_v1_chat"}
# Issue 10 clusters whose ext_proc reads bodies: processor name -> cluster (body modes: upstream_filters.py).
SURFACE_CLUSTERS = {
    gc.PROCESSOR_FILES: "codex_upstream_files",
    gc.PROCESSOR_V1_FILES: "codex_upstream_v1_files",
    gc.PROCESSOR_V1_AUDIO: "codex_upstream_v1_audio",
}


def upstream_parts(upstream: Upstream) -> dict[str, Any]:
    address = {"socket_address": {"address": upstream.host, "port_value": upstream.port}}
    raw = {
        "name": "envoy.transport_sockets.raw_buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"},
    }

    def tls(alpn: list[str]) -> dict[str, Any]:
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

    if upstream.tls:
        return {
            "upstream_address": address,
            "upstream_transport_socket": tls(["h2", "http/1.1"]),
            "upstream_transport_socket_http1": tls(["http/1.1"]),
            "upstream_protocol_key": "auto_config",
            "upstream_protocol": {"http_protocol_options": {}, "http2_protocol_options": {}},
            "upstream_discovery": "STATIC" if upstream.is_ip else "LOGICAL_DNS",
        }
    return {
        "upstream_address": address,
        "upstream_transport_socket": raw,
        "upstream_transport_socket_http1": raw,
        "upstream_protocol_key": "explicit_http_config",
        "upstream_protocol": {"http_protocol_options": {}},
        "upstream_discovery": "STATIC" if upstream.is_ip else "LOGICAL_DNS",
    }


def metrics_endpoint(config: GatewayConfig) -> Endpoint:
    if config.metrics is not None:
        return config.metrics
    if config.extproc.path is not None:
        return Endpoint.unix(metrics_socket_for(config.extproc.path))
    return Endpoint.tcp("127.0.0.1", DEFAULT_METRICS_PORT)


DEFAULT_METRICS_PORT = 9464


def metrics_socket_for(extproc_socket: str | Path) -> str:
    """Where an ext_proc serves /metrics: beside its gRPC socket (no port to allocate, no network exposure)."""
    return f"{extproc_socket}.metrics"


def static_cluster(name: str, endpoint: Endpoint) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": endpoint.envoy_address()}}]}],
        },
    }


def build_replica_parts(config: GatewayConfig) -> dict[str, Any]:
    """Endpoints of the ext_proc and access-log clusters: one per replica; health checks only with several (a
    lone replica gains nothing from them, and its config stays as it always was)."""
    pairs = [(config.extproc, config.accesslog), *config.replicas]
    interval = duration(config.replica_health_interval_seconds)
    checks = (
        [
            {
                "timeout": interval,
                "interval": interval,
                # Envoy checks idle clusters only every 60 s by default: a restarted replica would wait that long.
                "no_traffic_interval": interval,
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ]
        if config.replicas
        else []
    )
    return {
        "extproc_endpoints": [{"endpoint": {"address": x.envoy_address()}} for x, _ in pairs],
        "accesslog_endpoints": [{"endpoint": {"address": a.envoy_address()}} for _, a in pairs],
        "replica_health_checks": checks,
        # Never send work to a replica known to be down ("panic mode" would, below 50% healthy).
        "replica_lb_config": {"healthy_panic_threshold": {"value": 0}} if config.replicas else {},
    }
