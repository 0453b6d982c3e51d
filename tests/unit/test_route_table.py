"""The route table is the one source: its invariants, the fragments' golden files, and a row added to the table
showing up in every rendered output (bundled config, fragments, Kubernetes' standalone Envoy, Istio)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.envoy_config import Endpoint, GatewayConfig, render
from pooler.envoy_config.fragments import FRAGMENT_FILES, render_fragments
from pooler.envoy_config.istio import istio_gateway_config, render_istio
from tests.support.envoy_configs import load_render_deploy

GOLDEN = Path(__file__).parent / "golden" / "fragments"
REPO = Path(__file__).resolve().parents[2]


def _config() -> GatewayConfig:
    return GatewayConfig(
        listen=Endpoint.tcp("127.0.0.1", 8080),
        admin=Endpoint.tcp("127.0.0.1", 9901),
        extproc=Endpoint.tcp("pooler-extproc.pooler.svc", 9000),
        accesslog=Endpoint.tcp("pooler-extproc.pooler.svc", 9000),
        local=Endpoint.unix("/run/pooler/gateway-local.sock"),
        admin_app=Endpoint.tcp("127.0.0.1", 8081),
        upstream_url="https://chatgpt.com",
    )


def test_rows_are_consistent() -> None:
    for route in rt.ROUTES:
        assert route.name == route.name.strip() and route.name
        if route.through_extproc:
            assert rt.cluster_name(route) is not None
        if route.body is rt.Body.BUFFERED:
            assert not route.spec.headers_only
    # Only the bundled deployment's own services and catch-alls are left out of another team's Envoy.
    assert {r.name for r in rt.ROUTES if r.bundled_only} == {"healthz", "admin", "mcp", "metrics", "not_found"}
    # /v1 translation has its own clusters: never the plain Codex one.
    for name in ("v1_responses", "v1_chat_completions"):
        assert rt.cluster_name(rt.ROUTES_BY_NAME[name]) != "codex_upstream"
    assert rt.cluster_name(rt.ROUTES_BY_NAME["responses_ws"]) == "codex_upstream_ws"
    with pytest.raises(ValueError):
        rt.Route("bad", "x", rt.Target.CODEX, path="/a", prefix="/b")
    with pytest.raises(ValueError):
        rt.Route("bad", "x", rt.Target.CODEX, path="/a", body=rt.Body.BUFFERED)  # nobody reads that body


def test_fragments_match_golden() -> None:
    rendered = render_fragments(_config())
    assert tuple(rendered) == FRAGMENT_FILES
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (GOLDEN / name).write_text(text)
    for name, text in rendered.items():
        assert (GOLDEN / name).read_text() == text, f"{name} changed: UPDATE_GOLDEN=1 and review the diff"


def test_fragments_capture_only_pooler_paths() -> None:
    fragments = {name: yaml.safe_load(text) for name, text in render_fragments(_config()).items()}
    routes = fragments["routes.yaml"]
    for route in routes:
        match = route["match"]
        assert match.get("prefix") != "/" and match.get("path") not in ("/healthz", "/admin", "/mcp", "/metrics")
        if "route" in route:
            added = {h["header"]["key"]: h["header"]["value"] for h in route["request_headers_to_add"]}
            assert added[rt.ROUTE_HEADER] == route["name"]
            # Set by the route itself: per-key allowlists never depend on the header filter being installed.
            assert added[gc.CLIENT_IP_HEADER] == "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
    upstream_log = fragments["access_log.yaml"]["upstream_log"][0]
    assert upstream_log["filter"]["header_filter"]["header"]["name"] == gc.ACCOUNT_ID_HEADER
    assert {c["name"] for c in fragments["clusters.yaml"]} >= {"pooler_extproc", "pooler_accesslog", "gateway_local"}
    # Every pooler filter is the pooler's own name, off by default except the request-id copy (filter state for
    # the access log) and the SSE usage reader.
    filters = fragments["http_filters.yaml"]
    assert all(f["name"].startswith("pooler.") for f in filters)
    assert [f["name"] for f in filters if not f.get("disabled")] == ["pooler.request_id", "pooler.usage"]
    # The runtime key that lets our ext_proc skip its reset wait, and mappers scoped to the pooler's requests.
    assert fragments["runtime.yaml"]["static_layer"] == {"envoy.reloadable_features.ext_proc_graceful_grpc_close": True}
    for mapper in fragments["local_reply.yaml"]["mappers"]:
        assert "and_filter" in mapper["filter"]
    assert "filter" in fragments["access_log.yaml"]["access_log"][0]


def test_a_new_row_shows_up_in_every_output(monkeypatch: pytest.MonkeyPatch) -> None:
    row = rt.Route(
        "brand_new",
        gc.ROUTE_OTHER,
        rt.Target.CODEX,
        path="/backend-api/brand-new",
        method="POST",
        idle_timeout=rt.SSE_IDLE_TIMEOUT,
    )
    # Before the bundled-only catch-alls, as a real row would be.
    index = next(i for i, r in enumerate(rt.ROUTES) if r.name == "admin")
    routes = (*rt.ROUTES[:index], row, *rt.ROUTES[index:])
    monkeypatch.setattr(rt, "ROUTES", routes)
    monkeypatch.setattr(rt, "ROUTES_BY_NAME", {r.name: r for r in routes})

    def names(text: str) -> list[str]:
        doc = yaml.safe_load(text)
        listener = doc["static_resources"]["listeners"][0]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        return [r.get("name") for r in hcm["route_config"]["virtual_hosts"][0]["routes"]]

    assert "brand_new" in names(render(_config()))
    fragment_routes = yaml.safe_load(render_fragments(_config())["routes.yaml"])
    assert "brand_new" in [r["name"] for r in fragment_routes]
    assert "brand_new" in names(load_render_deploy().render_envoy())
    istio = render_istio(istio_gateway_config(), "pooler.example.com")
    assert "name: brand_new" in istio["envoyfilter-gateway.yaml"]
    # The ext_proc finds it by name.
    from extproc.processor import route_of

    assert route_of({rt.ROUTE_HEADER: "brand_new"}) == row
    assert dataclasses.replace(row).admits("/backend-api/brand-new", websocket=False)
