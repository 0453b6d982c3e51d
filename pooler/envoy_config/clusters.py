"""Clusters of the gateway's own processes: the ext_proc/access-log replica endpoints (discovery, client TLS),
and the single-endpoint admin, MCP and metrics clusters (the route table's upstream clusters: upstream_clusters.py).

Discovery: an endpoint named by DNS (a Kubernetes Service such as `pooler-extproc.pooler.svc:9000`) makes its
cluster STRICT_DNS - every address the name resolves to is an endpoint, re-resolved as pods come and go; IPs and
unix paths stay STATIC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pooler.envoy_config.inputs import Endpoint, ExtprocTls, GatewayConfig
from pooler.envoy_config.parts import duration


def metrics_endpoint(config: GatewayConfig) -> Endpoint:
    if config.metrics is not None:
        return config.metrics
    if config.extproc.path is not None:
        return Endpoint.unix(metrics_socket_for(config.extproc.path))
    # The metrics are served by the ext_proc process: same host, its POOLER_METRICS_LISTEN port.
    return Endpoint.tcp(config.extproc.host or "127.0.0.1", DEFAULT_METRICS_PORT)


DEFAULT_METRICS_PORT = 9464


def metrics_socket_for(extproc_socket: str | Path) -> str:
    """Where an ext_proc serves /metrics: beside its gRPC socket (no port to allocate, no network exposure)."""
    return f"{extproc_socket}.metrics"


def metrics_cluster(config: GatewayConfig) -> dict[str, Any]:
    """The /metrics cluster: one endpoint, or `metrics_slots` in failover order (Envoy priority = position,
    each checked by connecting: an empty slot refuses)."""
    if not config.metrics_slots:
        return static_cluster("pooler_metrics", metrics_endpoint(config))
    interval = duration(config.replica_health_interval_seconds)
    return {
        "name": "pooler_metrics",
        "type": discovery_type(*config.metrics_slots),
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "pooler_metrics",
            "endpoints": [
                {"priority": n, "lb_endpoints": [{"endpoint": {"address": e.envoy_address()}}]}
                for n, e in enumerate(config.metrics_slots)
            ],
        },
        "health_checks": [{**check, "tcp_health_check": {}} for check in _health_checks(interval, grpc=False)],
        "common_lb_config": NO_PANIC,
    }


def discovery_type(*endpoints: Endpoint) -> str:
    """STRICT_DNS when any endpoint is a DNS name, else STATIC. A cluster has one type, and a unix path cannot be
    resolved, so DNS names and paths never share a cluster."""
    if not any(e.is_dns for e in endpoints):
        return "STATIC"
    if any(e.path is not None for e in endpoints):
        raise ValueError("a cluster cannot mix DNS-named endpoints and unix sockets")
    return "STRICT_DNS"


# For STRICT_DNS clusters: the ext_proc typically listens on 0.0.0.0 (IPv4 only), so an AAAA answer (Envoy's
# default AUTO prefers IPv6) would point at a port nothing listens on; IPv6-only networks still resolve.
DNS_LOOKUP_FAMILY = "V4_PREFERRED"


def static_cluster(name: str, endpoint: Endpoint) -> dict[str, Any]:
    """A one-endpoint cluster (MCP, metrics): STATIC for an IP or unix path, STRICT_DNS for a DNS name."""
    kind = discovery_type(endpoint)
    return {
        "name": name,
        "type": kind,
        **({"dns_lookup_family": DNS_LOOKUP_FAMILY} if kind == "STRICT_DNS" else {}),
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": endpoint.envoy_address()}}]}],
        },
    }


RAW_BUFFER = {
    "name": "envoy.transport_sockets.raw_buffer",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"},
}


def extproc_transport_socket(tls: ExtprocTls | None) -> dict[str, Any]:
    """Plaintext (Envoy's default, spelled out) or gRPC over TLS to the ext_proc: ALPN h2, the server verified
    against `ca_file` (and its SAN against `sni` when given), Envoy's client certificate for mTLS."""
    if tls is None:
        return RAW_BUFFER
    validation: dict[str, Any] = {"trusted_ca": {"filename": tls.ca_file}}
    if tls.sni:
        validation["match_typed_subject_alt_names"] = [{"san_type": "DNS", "matcher": {"exact": tls.sni}}]
    common: dict[str, Any] = {"alpn_protocols": ["h2"], "validation_context": validation}
    if tls.cert_file is not None and tls.key_file is not None:
        common["tls_certificates"] = [
            {"certificate_chain": {"filename": tls.cert_file}, "private_key": {"filename": tls.key_file}}
        ]
    context: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        **({"sni": tls.sni} if tls.sni else {}),
        "common_tls_context": common,
    }
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def _health_checks(interval: str, grpc: bool = True) -> list[dict[str, Any]]:
    check: dict[str, Any] = {
        "timeout": interval,
        "interval": interval,
        # Envoy checks idle clusters only every 60 s by default: a restarted replica would wait that long.
        "no_traffic_interval": interval,
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
    }
    return [{**check, "grpc_health_check": {}} if grpc else check]


RECEIVER_FAILOVER_CHECK_SECONDS = 0.2
# Never send work to a replica known to be down ("panic mode" would, below 50% healthy).
NO_PANIC = {"healthy_panic_threshold": {"value": 0}}


def extproc_endpoints(config: GatewayConfig) -> list[Endpoint]:
    """Every endpoint of the pooler_extproc cluster: the ext_proc, the replicas' and the worker slots."""
    return [config.extproc, *(x for x, _ in config.replicas), *config.worker_slots]


def several_extprocs(config: GatewayConfig) -> bool:
    """Several ext_proc processes: listed, or behind one DNS name (a headless Kubernetes Service resolves to
    every pod). Then health checks take a stopping one out, and a stream it cannot take is retried on another."""
    extprocs = extproc_endpoints(config)
    return len(extprocs) > 1 or any(e.is_dns for e in extprocs)


def build_replica_parts(config: GatewayConfig) -> dict[str, Any]:
    """Endpoints, discovery and transport socket of the ext_proc and access-log clusters: one endpoint per
    replica, worker slot or receiver slot; health checks only where there are several, or a DNS name that may
    stand for several (a lone replica gains nothing from them, and its config stays as it always was)."""
    extprocs = extproc_endpoints(config)
    # Replicas may share one receiver (`pooler up`'s workers do): each address once.
    accesslogs = list(dict.fromkeys([config.accesslog, *(a for _, a in config.replicas)]))
    standby = list(config.receiver_slots)
    if config.extproc_tls is not None and any(e.path is not None for e in [*extprocs, *accesslogs]):
        raise ValueError("ext_proc TLS needs TCP endpoints: the ext_proc serves its unix sockets in plaintext")
    interval = duration(config.replica_health_interval_seconds)
    several = several_extprocs(config)
    several_receivers = several or len(accesslogs) > 1 or bool(standby) or any(e.is_dns for e in accesslogs)
    # With a standby, every flush Envoy sends to a receiver that died before its check noticed is lost: check
    # often (a gRPC health call to each slot, 5 a second, is nothing), so that window is short.
    receiver_interval = duration(RECEIVER_FAILOVER_CHECK_SECONDS) if standby else interval
    return {
        "extproc_discovery": discovery_type(*extprocs),
        "accesslog_discovery": discovery_type(*accesslogs, *standby),
        "extproc_transport_socket": extproc_transport_socket(config.extproc_tls),
        "extproc_endpoints": [{"endpoint": {"address": x.envoy_address()}} for x in extprocs],
        "accesslog_endpoints": [{"endpoint": {"address": a.envoy_address()}} for a in accesslogs],
        # Failover, not balancing: every entry to the first healthy receiver slot (one process holds the
        # request counters /metrics shows), the next slot's receiver as soon as it is not.
        "accesslog_standby_localities": "".join(
            ", " + json.dumps({"priority": n, "lb_endpoints": [{"endpoint": {"address": a.envoy_address()}}]})
            for n, a in enumerate(standby, start=1)
        ),
        "replica_health_checks": _health_checks(interval) if several else [],
        "replica_lb_config": NO_PANIC if several else {},
        "accesslog_health_checks": _health_checks(receiver_interval) if several_receivers else [],
        "accesslog_lb_config": NO_PANIC if several_receivers else {},
    }
