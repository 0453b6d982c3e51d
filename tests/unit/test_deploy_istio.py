"""The Istio example manifests carry the same ext_proc settings as the Envoy config we render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pooler import envoy_config as ec
from pooler import gateway_contract as gc

ISTIO = Path(__file__).resolve().parents[2] / "deploy" / "istio"
SOCKETS = "/var/run/pooler"


def _rendered() -> ec.GatewayConfig:
    return ec.GatewayConfig(
        listen=ec.Endpoint.tcp("0.0.0.0", 8080),
        admin=ec.Endpoint.tcp("127.0.0.1", 9901),
        extproc=ec.Endpoint.unix(f"{SOCKETS}/extproc.sock"),
        accesslog=ec.Endpoint.unix(f"{SOCKETS}/accesslog.sock"),
        local=ec.Endpoint.unix(f"{SOCKETS}/local.sock"),
        admin_app=ec.Endpoint.tcp("127.0.0.1", 8081),
    )


def _envoyfilter() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ISTIO / "envoyfilter-pooler.yaml").read_text())
    assert doc["kind"] == "EnvoyFilter"
    assert doc["spec"]["workloadSelector"]["labels"] == {"istio": "ingressgateway"}
    patches: list[dict[str, Any]] = doc["spec"]["configPatches"]
    return patches


def test_every_manifest_parses() -> None:
    for path in ISTIO.glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs and all("kind" in d and "apiVersion" in d for d in docs), path.name


def test_extproc_is_an_upstream_filter_with_the_rendered_settings() -> None:
    upstream = next(p for p in _envoyfilter() if p["match"].get("cluster", {}).get("service") == "chatgpt.com")
    options = upstream["patch"]["value"]["typed_extension_protocol_options"]
    filters = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
    assert filters == ec.build_upstream_http_filters(_rendered(), graceful_close=False)  # no runtime of ours there
    ext = filters[0]["typed_config"]
    assert ext["failure_mode_allow"] is False
    assert ext["metadata_options"]["receiving_namespaces"]["untyped"] == [gc.NS_ROUTING]
    assert filters[-1]["name"] == "envoy.filters.http.upstream_codec"


def test_sockets_clusters_and_access_log_match() -> None:
    patches = _envoyfilter()
    added = {p["patch"]["value"]["name"]: p["patch"]["value"] for p in patches if p["patch"]["operation"] == "ADD"}
    for name, socket in (("pooler_extproc", "extproc.sock"), ("pooler_accesslog", "accesslog.sock")):
        endpoint = added[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["pipe"]["path"] == f"{SOCKETS}/{socket}"
    log = ec.build_grpc_access_log(_rendered())
    router = next(p for p in patches if p["patch"]["value"].get("name") == "envoy.filters.http.router")
    assert router["patch"]["value"]["typed_config"]["upstream_log"] == [log]
    hcm = next(p for p in patches if p["applyTo"] == "NETWORK_FILTER")
    assert hcm["patch"]["value"]["typed_config"]["access_log"] == [log]
    scanner = next(p for p in patches if p["patch"]["value"].get("name") == "envoy.filters.http.lua")
    assert scanner["patch"]["operation"] == "INSERT_BEFORE"  # before the router, after the mesh's own filters
    assert scanner["patch"]["value"]["typed_config"]["default_source_code"]["inline_string"] == ec.REQUEST_SCAN_LUA


def test_gateway_pod_shares_the_socket_directory() -> None:
    doc = yaml.safe_load((ISTIO / "ingressgateway-extproc.yaml").read_text())
    containers = {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}
    for name in ("istio-proxy", "pooler-extproc"):
        assert containers[name]["volumeMounts"] == [{"name": "pooler-run", "mountPath": SOCKETS}]
    env = {e["name"]: e for e in containers["pooler-extproc"]["env"]}
    assert env["POOLER_EXTPROC_SOCKET"]["value"] == f"{SOCKETS}/extproc.sock"
    assert {"DATABASE_URL", "POOLER_SECRET_KEYS", "POOLER_KEY_PEPPER"} <= set(env)
