"""deploy/istio/ is rendered from the route table, and what it does to an Istio gateway's Envoy is valid.

There is no Istio control plane here. What is proven instead: the committed files equal the renderer's output;
a route-table change shows up in them; and the EnvoyFilter patches, applied by a small emulation of Istio's
patch operations (ADD, MERGE, INSERT_BEFORE, INSERT_FIRST) to a bootstrap shaped like the one Istio generates
for the gateway from these same ServiceEntry/DestinationRule/Gateway/VirtualService, give a config the real
Envoy binary accepts (`envoy --mode validate`) and that routes, retries and speaks HTTP as the bundled one.
Every patch must match something in the emulation (Istio itself silently skips a patch that matches nothing).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.envoy_config import Upstream, build_grpc_access_log, build_upstream_http_filters
from pooler.envoy_config.fragments import GRACEFUL_CLOSE_RUNTIME_KEY
from pooler.envoy_config.istio import (
    EXTPROC,
    HOST,
    ISTIO_FILES,
    RENDER_COMMAND,
    build_istio,
    istio_gateway_config,
    render_istio,
    subset_cluster,
    subset_name,
    vhost_name,
)
from pooler.envoy_config.timeouts import retry_policy
from pooler.envoy_config.upstream_clusters import CIRCUIT_BREAKERS
from tests.support.processes import VENV_BIN

ISTIO = Path(__file__).resolve().parents[2] / "deploy" / "istio"
UPSTREAM = "chatgpt.com"
PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
# Proto map fields: a MERGE replaces an entry whole (Go proto.Merge), it does not merge into it.
MAP_FIELDS = {"typed_extension_protocol_options", "typed_per_filter_config"}


def _docs(files: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [doc for docs in files.values() for doc in docs if doc["kind"] == kind]


def _one(files: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    (doc,) = _docs(files, kind)
    return doc


def _committed() -> dict[str, list[dict[str, Any]]]:
    return {path.name: list(yaml.safe_load_all(path.read_text())) for path in ISTIO.glob("*.yaml")}


# --- the committed files are the renderer's ---------------------------------------------------------------


def test_committed_files_are_what_the_renderer_writes() -> None:
    rendered = render_istio(istio_gateway_config())
    on_disk = {path.name: path.read_text() for path in ISTIO.glob("*.yaml")}
    assert set(on_disk) == set(ISTIO_FILES), "deploy/istio holds exactly the rendered files"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"deploy/istio/{name} is stale: re-render with `{RENDER_COMMAND}`"


def test_cli_writes_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pooler.cli.main import main

    monkeypatch.setenv("POOLER_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "istio"
    # The documented command names the upstream and retries, so it never needs the database.
    args = RENDER_COMMAND.split()[1:]
    assert args[:3] == ["envoy-config", "--istio", "deploy/istio"]
    assert main([*args[:2], str(out), *args[3:]]) == 0
    assert {p.name: p.read_text() for p in out.iterdir()} == render_istio(istio_gateway_config())


def test_every_file_has_a_header_and_the_kustomization_lists_every_resource() -> None:
    rendered = render_istio(istio_gateway_config())
    for name, text in rendered.items():
        assert text.startswith("# Codex Pooler on Istio"), name
        assert "pooler envoy-config --istio" in text.splitlines()[0]
    (kustomization,) = yaml.safe_load_all(rendered["kustomization.yaml"])
    assert sorted(kustomization["resources"]) == sorted(set(ISTIO_FILES) - {"kustomization.yaml"})


def test_the_host_reaches_every_place_that_names_it() -> None:
    files = build_istio(istio_gateway_config(), host="codex.corp.test")
    (server,) = _one(files, "Gateway")["spec"]["servers"]
    assert server["hosts"] == ["codex.corp.test"]
    assert server["tls"]["credentialName"] == "codex-corp-test"
    assert _one(files, "VirtualService")["spec"]["hosts"] == ["codex.corp.test"]
    (gateway_filter,) = files["envoyfilter-gateway.yaml"]
    text = json.dumps(gateway_filter)
    assert "pooler.example.com" not in text
    assert '"sni": "codex.corp.test"' in text and '"name": "codex.corp.test:443"' in text


def test_an_http_upstream_is_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        build_istio(istio_gateway_config(upstream_url="http://127.0.0.1:18999"))


# --- the route table drives them --------------------------------------------------------------------------


def _gateway_routes(files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    (gateway_filter,) = files["envoyfilter-gateway.yaml"]
    inserted = [p["patch"]["value"] for p in gateway_filter["spec"]["configPatches"] if p["applyTo"] == "HTTP_ROUTE"]
    return list(reversed(inserted))  # INSERT_FIRST one after another: the last one inserted ends up first


def test_a_new_route_row_shows_up(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = rt.Route("extra_row", gc.ROUTE_OTHER, rt.Target.CODEX, path="/backend-api/extra", timeout="7s")
    monkeypatch.setattr(rt, "ROUTES", (extra, *rt.ROUTES))
    routes = _gateway_routes(build_istio(istio_gateway_config()))
    assert routes[0]["name"] == "extra_row"
    assert routes[0]["match"] == {"path": "/backend-api/extra"}
    assert routes[0]["route"]["cluster"] == f"outbound|443|codex-upstream|{UPSTREAM}"
    assert routes[0]["route"]["timeout"] == "7s"


def test_subsets_follow_the_route_table(monkeypatch: pytest.MonkeyPatch) -> None:
    files = build_istio(istio_gateway_config())
    subsets = [s["name"] for s in _one(files, "DestinationRule")["spec"]["subsets"]]
    assert subsets == [subset_name(c) for c in rt.upstream_clusters(rt.fragment_routes())]
    assert {"codex-upstream", "codex-upstream-ws", "codex-upstream-v1-responses"} <= set(subsets)
    # Without its only row, the audio processor's subset (and its cluster patch) goes away.
    monkeypatch.setattr(rt, "ROUTES", tuple(r for r in rt.ROUTES if r.name != "v1_audio_transcriptions"))
    files = build_istio(istio_gateway_config())
    subsets = [s["name"] for s in _one(files, "DestinationRule")["spec"]["subsets"]]
    assert "codex-upstream-v1-audio" not in subsets
    (upstream_filter,) = files["envoyfilter-upstream.yaml"]
    patched = [p["match"]["cluster"]["subset"] for p in upstream_filter["spec"]["configPatches"]]
    assert patched == subsets


# --- an emulation of Istio's patching, on an Istio-shaped bootstrap -----------------------------------------


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Proto merge on JSON: messages merge field by field, repeated fields append, scalars and map entries are
    replaced; a typed_config Any of the same type merges into the existing one (Istio unpacks both)."""
    for key, value in src.items():
        old = dst.get(key)
        if key in MAP_FIELDS and isinstance(value, dict):
            dst.setdefault(key, {}).update(copy.deepcopy(value))
        elif isinstance(value, dict) and isinstance(old, dict) and old.get("@type") == value.get("@type"):
            _merge(old, value)
        elif isinstance(value, list) and isinstance(old, list):
            old.extend(copy.deepcopy(value))
        else:
            dst[key] = copy.deepcopy(value)


def _chains(bootstrap: dict[str, Any], match: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(listener, HCM filter) of every filter chain a ListenerMatch selects (by SNI and filter name)."""
    chain_match = match.get("listener", {}).get("filterChain", {})
    found = []
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []):
            sni = chain_match.get("sni")
            if sni is not None and sni not in chain.get("filter_chain_match", {}).get("server_names", []):
                continue
            for network_filter in chain["filters"]:
                if network_filter["name"] == chain_match.get("filter", {}).get("name", network_filter["name"]):
                    found.append((listener, network_filter))
    return found


def _apply(bootstrap: dict[str, Any], patch: dict[str, Any]) -> int:
    """Applies one EnvoyFilter configPatch; returns how many objects it changed."""
    target, match = patch["applyTo"], patch.get("match", {})
    operation, value = patch["patch"]["operation"], copy.deepcopy(patch["patch"]["value"])
    resources = bootstrap["static_resources"]
    if operation == "ADD" and target in ("CLUSTER", "LISTENER"):
        resources[f"{target.lower()}s"].append(value)
        return 1
    if target == "BOOTSTRAP" and operation == "MERGE":
        _merge(bootstrap, value)
        return 1
    if target == "CLUSTER" and operation == "MERGE":
        c = match["cluster"]
        name = f"outbound|{c['portNumber']}|{c.get('subset', '')}|{c['service']}"
        clusters = [cluster for cluster in resources["clusters"] if cluster["name"] == name]
        for cluster in clusters:
            _merge(cluster, value)
        return len(clusters)
    if target == "LISTENER" and operation == "MERGE":
        listeners = {id(li): li for li, _ in _chains(bootstrap, match)}
        for listener in listeners.values():
            _merge(listener, value)
        return len(listeners)
    if target == "NETWORK_FILTER" and operation == "MERGE":
        chains = _chains(bootstrap, match)
        for _, hcm in chains:
            _merge(hcm, value)
        return len(chains)
    if target == "HTTP_FILTER":
        sub = match["listener"]["filterChain"]["filter"]["subFilter"]["name"]
        count = 0
        for _, hcm in _chains(bootstrap, match):
            filters = hcm["typed_config"]["http_filters"]
            index = next(i for i, f in enumerate(filters) if f["name"] == sub)
            if operation == "INSERT_BEFORE":
                filters.insert(index, value)
            elif operation == "MERGE":
                _merge(filters[index], value)
            else:
                raise AssertionError(f"unemulated HTTP_FILTER operation {operation}")
            count += 1
        return count
    if target == "HTTP_ROUTE" and operation == "INSERT_FIRST":
        wanted = match["routeConfiguration"]["vhost"]["name"]
        count = 0
        for _, hcm in _chains(bootstrap, {}):
            for vhost in hcm["typed_config"]["route_config"]["virtual_hosts"]:
                if vhost["name"] == wanted:
                    vhost["routes"].insert(0, value)
                    count += 1
        return count
    raise AssertionError(f"unemulated patch {target} {operation}")


def _tls(sni: str, alpn: list[str]) -> dict[str, Any]:
    common: dict[str, Any] = {
        "validation_context": {"trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}},
    }
    if alpn:
        common["alpn_protocols"] = alpn
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": common,
        },
    }


def _dns_cluster(name: str, host: str, port: int) -> dict[str, Any]:
    address = {"socket_address": {"address": host, "port_value": port}}
    return {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _istio_like_bootstrap(files: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What Istio would give the ingress gateway for these Gateway/VirtualService/ServiceEntry/DestinationRule,
    reduced to what the patches touch. Istio serves it by xDS; here it is all static (routes inline)."""
    service_entry, rule = _one(files, "ServiceEntry"), _one(files, "DestinationRule")
    gateway, virtual_service = _one(files, "Gateway"), _one(files, "VirtualService")
    (host,) = service_entry["spec"]["hosts"]
    (port,) = service_entry["spec"]["ports"]
    assert service_entry["spec"]["resolution"] == "DNS"
    tls = rule["spec"]["trafficPolicy"]["tls"]
    assert tls["mode"] == "SIMPLE"
    clusters = []
    for subset in rule["spec"]["subsets"]:
        pool = subset["trafficPolicy"]["connectionPool"]
        h2 = pool["http"]["h2UpgradePolicy"] == "UPGRADE"
        cluster = _dns_cluster(f"outbound|{port['number']}|{subset['name']}|{host}", host, port["number"])
        # Istio: the connection pool becomes the default-priority thresholds; ALPN h2 only on upgraded clusters.
        cluster["circuit_breakers"] = {
            "thresholds": [
                {
                    "max_connections": pool["tcp"]["maxConnections"],
                    "max_pending_requests": pool["http"]["http1MaxPendingRequests"],
                    "max_requests": pool["http"]["http2MaxRequests"],
                    "max_retries": pool["http"]["maxRetries"],
                    "track_remaining": True,
                }
            ]
        }
        cluster["transport_socket"] = _tls(tls["sni"], ["h2"] if h2 else [])
        http = {"http2_protocol_options": {}} if h2 else {"http_protocol_options": {}}
        cluster["typed_extension_protocol_options"] = {
            PROTOCOL_OPTIONS: {
                "@type": f"type.googleapis.com/{PROTOCOL_OPTIONS}",
                "common_http_protocol_options": {"idle_timeout": "3600s"},
                "explicit_http_config": http,
            }
        }
        clusters.append(cluster)
    vhost_routes = []
    for http_route in virtual_service["spec"]["http"]:
        destination = http_route["route"][0]["destination"]
        name = f"outbound|{destination['port']['number']}||{destination['host']}"
        clusters.append(_dns_cluster(name, destination["host"], destination["port"]["number"]))
        vhost_routes.append(
            {
                "name": http_route["name"],
                "match": {"prefix": http_route["match"][0]["uri"]["prefix"]},
                "route": {"cluster": name, "timeout": "0s"},
            }
        )
    (server,) = gateway["spec"]["servers"]
    (gateway_host,) = server["hosts"]
    server_port = server["port"]["number"]
    hcm = {
        "name": HCM,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager",
            "stat_prefix": "outbound_0.0.0.0_8443",
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": "/dev/stdout",
                    },
                }
            ],
            "route_config": {
                "name": f"https.{server_port}.https.{gateway['metadata']['name']}.{gateway['metadata']['namespace']}",
                "virtual_hosts": [
                    {
                        "name": f"{gateway_host}:{server_port}",
                        "domains": [gateway_host, f"{gateway_host}:*"],
                        "routes": vhost_routes,
                    }
                ],
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.fault",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"},
                },
                {
                    "name": "envoy.filters.http.cors",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
                },
                {
                    "name": ROUTER,
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                },
            ],
        },
    }
    listener = {
        "name": "0.0.0.0_8443",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8443}},
        "listener_filters": [
            {
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
                },
            }
        ],
        "filter_chains": [{"filter_chain_match": {"server_names": [gateway_host]}, "filters": [hcm]}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
        "layered_runtime": {
            "layers": [
                {"name": "global_config", "static_layer": {"overload.global_downstream_max_connections": 2147483647}},
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def _patched(files: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    bootstrap = _istio_like_bootstrap(files)
    for envoy_filter in _docs(files, "EnvoyFilter"):
        assert envoy_filter["spec"]["workloadSelector"]["labels"] == {"istio": "ingressgateway"}
        for patch in envoy_filter["spec"]["configPatches"]:
            if "match" in patch:
                assert patch["match"]["context"] == "GATEWAY"
            assert _apply(bootstrap, patch) >= 1, f"{envoy_filter['metadata']['name']}: matches nothing: {patch}"
    return bootstrap


@pytest.fixture(scope="module")
def patched() -> dict[str, Any]:
    return _patched(_committed())


def _clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def _hcm(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listener = next(li for li in bootstrap["static_resources"]["listeners"] if li["name"] == "0.0.0.0_8443")
    hcm: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def _vhost_routes(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = _hcm(bootstrap)["route_config"]["virtual_hosts"]
    assert vhost["name"] == vhost_name(HOST)
    routes: list[dict[str, Any]] = vhost["routes"]
    return routes


def test_envoy_accepts_the_patched_gateway_config(patched: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(patched))
    result = subprocess.run(
        [str(VENV_BIN / "envoy"), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_envoy_rejects_a_route_to_a_subset_istio_would_not_generate(patched: dict[str, Any], tmp_path: Path) -> None:
    """The validation above is worth something: a route naming a cluster nobody generates fails it."""
    broken = copy.deepcopy(patched)
    route = next(r for r in _vhost_routes(broken) if r["name"] == "responses")
    route["route"]["cluster"] = f"outbound|443|codex_upstream|{UPSTREAM}"  # the bundled name, not the subset's
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run(
        [str(VENV_BIN / "envoy"), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_routes_come_first_in_table_order_and_keep_the_virtual_service_route(patched: dict[str, Any]) -> None:
    names = [r["name"] for r in _vhost_routes(patched)]
    assert names == [*(r.name for r in rt.fragment_routes()), "admin"]
    for required in ("readyz", "usage_wham", "usage_codex", "v1_models", "responses_ws"):
        assert required in names


def test_routes_reach_their_subsets_and_retry_like_the_bundled_config(patched: dict[str, Any]) -> None:
    routes = {r["name"]: r for r in _vhost_routes(patched)}
    clusters = _clusters(patched)
    for row in rt.fragment_routes():
        action = routes[row.name].get("route")
        if row.target is rt.Target.DIRECT:
            assert "direct_response" in routes[row.name]
            continue
        assert action is not None
        assert action["cluster"] in clusters, row.name
        if row.target in (rt.Target.CODEX, rt.Target.CODEX_WS):
            cluster = rt.cluster_name(row)
            assert cluster is not None
            assert action["cluster"] == subset_cluster(cluster, _upstream())
            assert action["host_rewrite_literal"] == UPSTREAM
            policy = action["retry_policy"]
            assert set(gc.RETRIABLE_STATUS_CODES) == {401, 429, 500, 502, 503, 504}
            assert sorted(policy["retriable_status_codes"]) == sorted(row.retry_statuses)
            assert policy == retry_policy(istio_gateway_config().num_retries, row.retry_statuses)
        else:
            assert action["cluster"] == "gateway_local"
            assert "retry_policy" not in action
    # The /v1 rows the gateway translates go to their processor's subset, never the plain one.
    for name, subset in (
        ("v1_responses", "codex-upstream-v1-responses"),
        ("v1_chat_completions", "codex-upstream-v1-chat"),
        ("v1_files", "codex-upstream-v1-files"),
        ("v1_audio_transcriptions", "codex-upstream-v1-audio"),
    ):
        assert routes[name]["route"]["cluster"] == f"outbound|443|{subset}|{UPSTREAM}"
    assert routes["v1"]["direct_response"]["status"] == 404  # any other /v1 path: never untranslated upstream
    for name, path in (
        ("readyz", "/readyz"),
        ("usage_wham", "/backend-api/wham/usage"),
        ("usage_codex", "/api/codex/usage"),
    ):
        assert routes[name]["match"] == {"path": path}


def _upstream() -> Upstream:
    return Upstream.parse(istio_gateway_config().upstream_url)


def _options(cluster: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = cluster["typed_extension_protocol_options"][PROTOCOL_OPTIONS]
    return options


def test_subset_clusters_carry_their_ext_proc_and_protocol(patched: dict[str, Any]) -> None:
    clusters = _clusters(patched)
    config = istio_gateway_config()
    for name, processor in rt.upstream_clusters(rt.fragment_routes()).items():
        cluster = clusters[subset_cluster(name, _upstream())]
        assert _options(cluster)["http_filters"] == build_upstream_http_filters(config, processor)
        # The DestinationRule's connection pool gives the thresholds upstream_clusters.py sets, once.
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        assert {k: v for k, v in threshold.items() if k != "track_remaining"} == CIRCUIT_BREAKERS["thresholds"][0]
        assert cluster["transport_socket"]["typed_config"]["sni"] == UPSTREAM
    ws = clusters[f"outbound|443|codex-upstream-ws|{UPSTREAM}"]
    assert _options(ws)["explicit_http_config"] == {"http_protocol_options": {}}
    assert "auto_config" not in _options(ws)
    assert ws["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"] == ["http/1.1"]
    plain = clusters[f"outbound|443|codex-upstream|{UPSTREAM}"]
    assert "h2" in plain["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"]
    assert "http2_protocol_options" in _options(plain)["auto_config"]
    responses = clusters[f"outbound|443|codex-upstream-v1-responses|{UPSTREAM}"]
    ext_proc = _options(responses)["http_filters"][0]["typed_config"]
    assert ext_proc["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert {"key": gc.PROCESSOR_METADATA_KEY, "value": gc.PROCESSOR_V1_RESPONSES} in ext_proc["grpc_service"][
        "initial_metadata"
    ]


def test_ext_proc_is_the_service_over_the_network(patched: dict[str, Any]) -> None:
    clusters = _clusters(patched)
    for name in ("pooler_extproc", "pooler_accesslog"):
        (group,) = clusters[name]["load_assignment"]["endpoints"]
        addresses = [e["endpoint"]["address"]["socket_address"] for e in group["lb_endpoints"]]
        assert addresses == [{"address": EXTPROC.host, "port_value": EXTPROC.port}]
        assert clusters[name]["type"] != "STATIC"  # a host name: resolved by DNS
    assert "gateway_local" in clusters
    (listener,) = [li for li in patched["static_resources"]["listeners"] if li["name"] == "gateway_local"]
    assert "pipe" in listener["address"]
    assert not any("ingressgateway-extproc" in name for name in ISTIO_FILES)


def test_filters_logs_replies_and_runtime(patched: dict[str, Any]) -> None:
    hcm = _hcm(patched)
    names = [f["name"] for f in hcm["http_filters"]]
    pooler = [f["name"] for f in istio_files_fragment("http_filters.yaml")]
    # The mesh's filters first, then the pooler's in their order, the router last.
    assert names == ["envoy.filters.http.fault", "envoy.filters.http.cors", *pooler, ROUTER]
    log = build_grpc_access_log(istio_gateway_config())
    assert hcm["access_log"][0]["name"] == "envoy.access_loggers.file"  # the mesh's own log stays
    assert {k: v for k, v in hcm["access_log"][1].items() if k != "filter"} == log
    # Attempts the ext_proc routed to an account only (the gateway's other hosts never reach the ext_proc).
    (attempt_log,) = hcm["http_filters"][-1]["typed_config"]["upstream_log"]
    assert {k: v for k, v in attempt_log.items() if k != "filter"} == log
    assert attempt_log["filter"]["header_filter"]["header"]["name"] == "chatgpt-account-id"
    codes = {m["body_format_override"]["content_type"] for m in hcm["local_reply_config"]["mappers"]}
    assert codes == {"application/json"}
    assert patched["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] == 16 * 1024 * 1024
    layers = patched["layered_runtime"]["layers"]
    assert [layer["name"] for layer in layers] == ["global_config", "admin", "pooler"]
    assert layers[-1]["static_layer"] == {GRACEFUL_CLOSE_RUNTIME_KEY: True}


def istio_files_fragment(name: str) -> Any:
    from pooler.envoy_config.fragments import build_fragments

    return build_fragments(istio_gateway_config())[name]


def test_a_new_row_validates_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    extra = rt.Route("extra_row", gc.ROUTE_OTHER, rt.Target.CODEX_WS, path="/backend-api/extra", websocket=True)
    monkeypatch.setattr(rt, "ROUTES", (extra, *rt.ROUTES))
    files = build_istio(dataclasses.replace(istio_gateway_config(), num_retries=4))
    bootstrap = _patched(json.loads(json.dumps(files)))
    (route,) = [r for r in _vhost_routes(bootstrap) if r["name"] == "extra_row"]
    assert route["route"]["cluster"] == f"outbound|443|codex-upstream-ws|{UPSTREAM}"
    assert route["route"]["retry_policy"]["num_retries"] == 4
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [str(VENV_BIN / "envoy"), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
