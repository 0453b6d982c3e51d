"""Istio manifests for the pooler behind an Istio ingress gateway (`pooler envoy-config --istio DIR`).

Rendered from the same builders as the bundled config and the fragments (pooler/envoy_config/fragments.py), so
the route table (pooler/route_table.py) is the one source: a new row shows up here on the next render.

Shape: the Codex upstream is a ServiceEntry plus a DestinationRule that originates TLS, with one subset per
upstream cluster of the route table, so Istio generates one cluster per subset
(`outbound|<port>|<subset>|<host>`) and the ext_proc upstream filter of each is patched in by an EnvoyFilter.
The ext_proc is a Service reached over the network (deploy/kubernetes/base). Everything else the pooler adds
to an Envoy (its clusters, the gateway_local listener, HTTP filters, routes, local-reply mappers, access logs,
the runtime key) is an EnvoyFilter patch of the gateway. Pure: plain dicts in, YAML text out.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import yaml

from pooler import route_table as rt
from pooler.envoy_config.fragments import GRACEFUL_CLOSE_RUNTIME_KEY, build_fragments
from pooler.envoy_config.inputs import DEFAULT_NUM_RETRIES, DEFAULT_UPSTREAM_URL, Endpoint, GatewayConfig, Upstream
from pooler.envoy_config.upstream_clusters import CIRCUIT_BREAKERS

NAMESPACE = "istio-system"
"""Where the ingress gateway runs and reads these resources."""
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
GATEWAY_NAME = "pooler"
HOST = "pooler.example.com"
"""The clients' host name by default (`--istio-host`); its TLS secret in istio-system is named after it."""
HTTPS_PORT = 443
EXTPROC = Endpoint.tcp("pooler-extproc.pooler.svc.cluster.local", 9000)
"""The headless ext_proc Service of deploy/kubernetes/base: gRPC (ext_proc and access log) on one port."""
LOCAL_SOCKET = "/etc/istio/proxy/pooler-gateway-local.sock"
"""gateway_local's unix socket: the gateway's root filesystem is read-only, /etc/istio/proxy is its emptyDir."""
ADMIN_SERVICE = "pooler-admin.pooler.svc.cluster.local"
ADMIN_PORT = 8081

ROUTER = "envoy.filters.http.router"
HCM = "envoy.filters.network.http_connection_manager"
_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_WS_CLUSTER = "codex_upstream_ws"

RENDER_COMMAND = "pooler envoy-config --istio deploy/istio --upstream https://chatgpt.com --num-retries 2"
"""What renders the committed deploy/istio/ (naming upstream and retries, it never reads the database)."""
_RENDERED_BY = "rendered by `pooler envoy-config --istio DIR` (see deploy/istio/README.md)"

_HEADERS = {
    "gateway.yaml": (
        "The Gateway (HTTPS for the clients' host, TLS from the secret `credentialName`) and a VirtualService\n"
        "bound to it. The VirtualService makes Istio generate the virtual host the pooler's routes are inserted\n"
        "into (envoyfilter-gateway.yaml matches it by name, `<host>:<port>`); its own route is /admin only."
    ),
    "upstream.yaml": (
        "The Codex upstream the way Istio documents TLS origination: a MESH_EXTERNAL ServiceEntry (exported to\n"
        "this namespace only: other workloads keep their own view of the host) and a DestinationRule that\n"
        "originates TLS, with one subset per upstream cluster of the route table. Istio generates a cluster per\n"
        "subset, `outbound|<port>|<subset>|<host>`; envoyfilter-upstream.yaml puts the ext_proc on each.\n"
        "Websockets get an HTTP/1.1-only subset (an HTTP/2 upstream would need extended CONNECT). Every subset\n"
        "carries the whole connectionPool: a subset's connectionPool replaces the top-level one, it does not merge."
    ),
    "envoyfilter-upstream.yaml": (
        "The ext_proc as the upstream HTTP filter of each subset cluster (runs once per attempt, so a retry picks\n"
        "another account; fail closed), with the processing mode its processor needs, and the HTTP protocol the\n"
        "bundled config uses. Replaces the cluster's HttpProtocolOptions whole (a map entry: proto merge replaces)."
    ),
    "envoyfilter-gateway.yaml": (
        "The pooler's pieces of the gateway's Envoy, scoped to the Gateway host's filter chain (SNI) and virtual\n"
        "host: the ext_proc/access-log clusters (the ext_proc Service over plaintext HTTP/2), the gateway_local\n"
        "listener and cluster, the pooler HTTP filters before the router (off by default, turned on by the\n"
        "pooler's routes), the routes (first in the virtual host: inserted last to first), the local-reply\n"
        "mappers, the gRPC access log (downstream and per attempt), and the listener's buffer limit (retries and\n"
        "the request scanner need the whole body buffered)."
    ),
    "envoyfilter-runtime.yaml": (
        "The runtime key the pooler's ext_proc filters rely on (a graceful close of each ext_proc stream instead\n"
        "of a reset, which leaks ~80 bytes per request in grpcio). A BOOTSTRAP patch: Istio applies it when the\n"
        "gateway's Envoy starts, so restart the gateway pods after applying or changing it."
    ),
    "kustomization.yaml": (
        "The resources of deploy/istio/ as one kustomization (included by deploy/kubernetes/overlays/istio).\n"
        "They keep their namespace, istio-system, where the ingress gateway reads them."
    ),
}
ISTIO_FILES = tuple(_HEADERS)


def istio_gateway_config(
    upstream_url: str = DEFAULT_UPSTREAM_URL, num_retries: int = DEFAULT_NUM_RETRIES
) -> GatewayConfig:
    """The GatewayConfig of the pooler in an Istio gateway: the ext_proc Service for both gRPC streams,
    gateway_local on a socket the gateway can create. The listen/admin/admin-app endpoints are unused here."""
    return GatewayConfig(
        listen=Endpoint.tcp("0.0.0.0", 8080),
        admin=Endpoint.tcp("127.0.0.1", 9901),
        extproc=EXTPROC,
        accesslog=EXTPROC,
        local=Endpoint.unix(LOCAL_SOCKET),
        admin_app=Endpoint.tcp(ADMIN_SERVICE, ADMIN_PORT),
        upstream_url=upstream_url,
        num_retries=num_retries,
    )


def subset_name(cluster: str) -> str:
    """Istio subset names are DNS labels: no underscores."""
    return cluster.replace("_", "-")


def subset_cluster(cluster: str, upstream: Upstream) -> str:
    """The name Istio gives the cluster of a DestinationRule subset."""
    return f"outbound|{upstream.port}|{subset_name(cluster)}|{upstream.host}"


def tls_secret(host: str) -> str:
    """The Secret (in istio-system) holding the host's certificate: `kubectl create secret tls <this> ...`."""
    return host.replace(".", "-")


def vhost_name(host: str = HOST) -> str:
    """The virtual host Istio generates for a VirtualService host on the Gateway's port."""
    return f"{host}:{HTTPS_PORT}"


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE}


def _envoy_filter(name: str, patches: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": _meta(name),
        "spec": {"workloadSelector": {"labels": dict(GATEWAY_SELECTOR)}, "configPatches": patches},
    }


def _dns_cluster(cluster: dict[str, Any]) -> dict[str, Any]:
    """A STATIC cluster whose endpoints are host names cannot load (Envoy takes only IPs there): resolve them
    by DNS, every address (the ext_proc Service is headless: one address per ready replica)."""
    addresses = [
        e["endpoint"]["address"]["socket_address"]["address"]
        for group in cluster["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
        if "socket_address" in e["endpoint"]["address"]
    ]

    def is_ip(text: str) -> bool:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return False
        return True

    if cluster.get("type") == "STATIC" and addresses and not all(is_ip(a) for a in addresses):
        return {**cluster, "type": "STRICT_DNS", "dns_lookup_family": "V4_PREFERRED"}
    return cluster


def _connection_pool(websocket: bool) -> dict[str, Any]:
    """The circuit breakers of upstream_clusters.py, as DestinationRule settings (Istio sets the cluster's
    thresholds from them; an EnvoyFilter MERGE would append a second threshold set instead)."""
    (limits,) = CIRCUIT_BREAKERS["thresholds"]
    return {
        "tcp": {"maxConnections": limits["max_connections"]},
        "http": {
            "http1MaxPendingRequests": limits["max_pending_requests"],
            "http2MaxRequests": limits["max_requests"],
            "maxRetries": limits["max_retries"],
            # Istio advertises h2 by ALPN only on upgraded clusters: websockets must stay on HTTP/1.1.
            "h2UpgradePolicy": "DO_NOT_UPGRADE" if websocket else "UPGRADE",
        },
    }


def _upstream(upstream: Upstream, clusters: dict[str, str | None]) -> list[dict[str, Any]]:
    service_entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": _meta("codex-upstream"),
        "spec": {
            "hosts": [upstream.host],
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            # HTTP on the TLS port: the gateway speaks HTTP to this host and the DestinationRule adds the TLS.
            "ports": [{"number": upstream.port, "name": "http", "protocol": "HTTP"}],
        },
    }
    destination_rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": _meta("codex-upstream"),
        "spec": {
            "host": upstream.host,
            "exportTo": ["."],
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": upstream.host}},
            "subsets": [
                {
                    "name": subset_name(name),
                    "trafficPolicy": {"connectionPool": _connection_pool(name == _WS_CLUSTER)},
                }
                for name in clusters
            ],
        },
    }
    return [service_entry, destination_rule]


def _upstream_filter(upstream: Upstream, clusters: list[dict[str, Any]]) -> dict[str, Any]:
    patches = []
    for cluster in clusters:
        value: dict[str, Any] = {
            "typed_extension_protocol_options": {
                _PROTOCOL_OPTIONS: cluster["typed_extension_protocol_options"][_PROTOCOL_OPTIONS]
            }
        }
        if cluster["name"] == _WS_CLUSTER:
            # Offer only HTTP/1.1, whatever ALPN Istio's TLS settings would otherwise leave to the server.
            value["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {"@type": _TLS_TYPE, "common_tls_context": {"alpn_protocols": ["http/1.1"]}},
            }
        patches.append(
            {
                "applyTo": "CLUSTER",
                "match": {
                    "context": "GATEWAY",
                    "cluster": {
                        "service": upstream.host,
                        "portNumber": upstream.port,
                        "subset": subset_name(cluster["name"]),
                    },
                },
                "patch": {"operation": "MERGE", "value": value},
            }
        )
    return _envoy_filter("pooler-upstream", patches)


def _gateway_filter(config: GatewayConfig, fragments: dict[str, Any], upstream: Upstream, host: str) -> dict[str, Any]:
    subsets = set(rt.upstream_clusters(rt.fragment_routes()))
    own = [_dns_cluster(c) for c in fragments["clusters.yaml"] if c["name"] not in subsets]
    chain = {"sni": host, "filter": {"name": HCM}}
    listener = {"filterChain": chain}
    before_router = {"filterChain": {**chain, "filter": {"name": HCM, "subFilter": {"name": ROUTER}}}}
    vhost = {"routeConfiguration": {"vhost": {"name": vhost_name(host)}}}

    def patch(apply_to: str, match: dict[str, Any], operation: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "applyTo": apply_to,
            "match": {"context": "GATEWAY", **match},
            "patch": {"operation": operation, "value": value},
        }

    routes = []
    for route in fragments["routes.yaml"]:
        action = route.get("route")
        if action is not None and action.get("cluster") in subsets:
            route = {**route, "route": {**action, "cluster": subset_cluster(action["cluster"], upstream)}}
        routes.append(route)
    logs = fragments["access_log.yaml"]
    return _envoy_filter(
        "pooler-gateway",
        [
            *(patch("CLUSTER", {}, "ADD", cluster) for cluster in own),
            *(patch("LISTENER", {}, "ADD", li) for li in fragments["listeners.yaml"]),
            patch(
                "LISTENER",
                {"listener": listener},
                "MERGE",
                {"per_connection_buffer_limit_bytes": config.buffer_limit_bytes},
            ),
            # One at a time before the router: each lands after the previous one, so the order is kept.
            *(
                patch("HTTP_FILTER", {"listener": before_router}, "INSERT_BEFORE", f)
                for f in fragments["http_filters.yaml"]
            ),
            patch(
                "HTTP_FILTER",
                {"listener": before_router},
                "MERGE",
                {"name": ROUTER, "typed_config": {"@type": _ROUTER_TYPE, "upstream_log": logs["upstream_log"]}},
            ),
            patch(
                "NETWORK_FILTER",
                {"listener": listener},
                "MERGE",
                {
                    "name": HCM,
                    "typed_config": {
                        "@type": _HCM_TYPE,
                        "access_log": logs["access_log"],
                        "local_reply_config": fragments["local_reply.yaml"],
                    },
                },
            ),
            # INSERT_FIRST puts each route at the top: inserted last to first, they end up in table order.
            *(patch("HTTP_ROUTE", vhost, "INSERT_FIRST", route) for route in reversed(routes)),
        ],
    )


def _runtime_filter(fragments: dict[str, Any]) -> dict[str, Any]:
    layer = fragments["runtime.yaml"]
    if GRACEFUL_CLOSE_RUNTIME_KEY not in layer["static_layer"]:
        raise ValueError("the runtime fragment lost the ext_proc graceful-close key")
    return _envoy_filter(
        "pooler-runtime",
        [{"applyTo": "BOOTSTRAP", "patch": {"operation": "MERGE", "value": {"layered_runtime": {"layers": [layer]}}}}],
    )


def _gateway(host: str) -> list[dict[str, Any]]:
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": _meta(GATEWAY_NAME),
        "spec": {
            "selector": dict(GATEWAY_SELECTOR),
            "servers": [
                {
                    "port": {"number": HTTPS_PORT, "name": "https", "protocol": "HTTPS"},
                    "hosts": [host],
                    "tls": {"mode": "SIMPLE", "credentialName": tls_secret(host)},
                }
            ],
        },
    }
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta(GATEWAY_NAME),
        "spec": {
            "hosts": [host],
            "gateways": [GATEWAY_NAME],
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": ADMIN_SERVICE, "port": {"number": ADMIN_PORT}}}],
                }
            ],
        },
    }
    return [gateway, virtual_service]


def build_istio(config: GatewayConfig, host: str = HOST) -> dict[str, list[dict[str, Any]]]:
    """File name -> its YAML documents as plain data."""
    upstream = Upstream.parse(config.upstream_url)
    if not upstream.tls:
        raise ValueError("the Istio manifests originate TLS: the upstream must be an https URL")
    fragments = build_fragments(config)
    clusters = rt.upstream_clusters(rt.fragment_routes())
    subset_clusters = [c for c in fragments["clusters.yaml"] if c["name"] in clusters]
    resources = [name for name in ISTIO_FILES if name != "kustomization.yaml"]
    return {
        "gateway.yaml": _gateway(host),
        "upstream.yaml": _upstream(upstream, clusters),
        "envoyfilter-upstream.yaml": [_upstream_filter(upstream, subset_clusters)],
        "envoyfilter-gateway.yaml": [_gateway_filter(config, fragments, upstream, host)],
        "envoyfilter-runtime.yaml": [_runtime_filter(fragments)],
        "kustomization.yaml": [
            {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}
        ],
    }


def render_istio(config: GatewayConfig, host: str = HOST) -> dict[str, str]:
    """File name -> YAML text with its comment header. Pure: same input, same text."""
    out: dict[str, str] = {}
    for name, docs in build_istio(config, host).items():
        header = "".join(f"# {line}\n" for line in _HEADERS[name].splitlines())
        plain = json.loads(json.dumps(docs))  # tuples -> lists; no YAML anchors for shared dicts
        text = yaml.safe_dump_all(plain, sort_keys=False, width=120)
        out[name] = f"# Codex Pooler on Istio, {name}: {_RENDERED_BY}; do not edit.\n{header}{text}"
    return out


__all__ = [
    "EXTPROC",
    "HOST",
    "ISTIO_FILES",
    "LOCAL_SOCKET",
    "NAMESPACE",
    "RENDER_COMMAND",
    "build_istio",
    "istio_gateway_config",
    "render_istio",
    "subset_cluster",
    "subset_name",
    "tls_secret",
    "vhost_name",
]
