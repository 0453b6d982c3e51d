"""Clusters of the gateway's own processes: the ext_proc/access-log replica endpoints, and the static MCP and
metrics clusters (the route table's upstream clusters: upstream_clusters.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pooler.envoy_config.inputs import Endpoint, GatewayConfig
from pooler.envoy_config.parts import duration


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
