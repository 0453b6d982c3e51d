"""The rendered Envoy config: one per deployment shape, each accepted by `envoy --mode validate`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pooler import gateway_contract as gc
from pooler.envoy_config import (
    HEADERS_FILTER,
    USAGE_FILTER,
    WS_USAGE_FILTER,
    WS_USAGE_SCRIPT,
    WS_VIEW_FILTER,
    WS_VIEW_SCRIPT,
    Endpoint,
    Upstream,
    num_retries_for,
    render,
)
from pooler.envoy_config.parts import FILTER_CONFIG
from tests.support.envoy_configs import sample_config
from tests.support.processes import VENV_BIN

_config = sample_config


SHAPES = {
    "simulator_unix": {},
    "https_unix": {"upstream_url": "https://chatgpt.com"},
    "simulator_tcp": {
        "extproc": Endpoint.tcp("127.0.0.1", 18500),
        "accesslog": Endpoint.tcp("127.0.0.1", 18501),
        "access_log_path": "/dev/stdout",
    },
    "https_tcp_retries": {
        "upstream_url": "https://chatgpt.com",
        "extproc": Endpoint.tcp("127.0.0.1", 18500),
        "num_retries": 5,
    },
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_rendered_config_validates(shape: str, tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(render(_config(tmp_path, **SHAPES[shape])))
    result = subprocess.run(
        [str(VENV_BIN / "envoy"), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def _doc(tmp: Path, **changes: object) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(render(_config(tmp, **changes)))


def _routes(doc: dict) -> dict:  # type: ignore[type-arg]
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {r["name"]: r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}


def test_streaming_routes_have_no_route_timeout_and_deliberate_idle_timeouts(tmp_path: Path) -> None:
    routes = _routes(_doc(tmp_path))
    for name in ("responses", "responses_ws", "compact"):
        action = routes[name]["route"]
        assert action["timeout"] == "0s"
        assert action["idle_timeout"]
        assert action["retry_policy"]["per_try_idle_timeout"]


def test_retry_policy_comes_from_the_contract(tmp_path: Path) -> None:
    policy = _routes(_doc(tmp_path, num_retries=4))["responses"]["route"]["retry_policy"]
    assert policy["retry_on"] == gc.RETRY_ON
    assert policy["retriable_status_codes"] == list(gc.RETRIABLE_STATUS_CODES)
    assert policy["num_retries"] == 4
    assert num_retries_for([]) == 2 and num_retries_for([5, 2]) == 4


def test_websocket_route_is_headers_only_on_an_http1_cluster(tmp_path: Path) -> None:
    doc = _doc(tmp_path, upstream_url="https://chatgpt.com")
    ws = _routes(doc)["responses_ws"]
    assert ws["route"]["cluster"] == "codex_upstream_ws"
    per_filter = dict(ws["typed_per_filter_config"])
    # Enabled here: the header filter, the pooled view's frame rewriter and the token counter (streaming Lua
    # filters, no body modes); the request scanner stays off (default) and the SSE usage reader is turned off.
    assert per_filter.pop(WS_VIEW_FILTER)["config"]["name"] == WS_VIEW_SCRIPT
    assert per_filter.pop(WS_USAGE_FILTER)["config"]["name"] == WS_USAGE_SCRIPT
    assert per_filter.pop(HEADERS_FILTER)["config"]
    assert per_filter == {USAGE_FILTER: {"@type": FILTER_CONFIG, "disabled": True}}
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    options = clusters["codex_upstream_ws"]["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert http["explicit_http_config"] == {"http_protocol_options": {}}
    ext_proc = http["http_filters"][0]["typed_config"]
    assert ext_proc["processing_mode"]["request_body_mode"] == "NONE"
    assert ext_proc["processing_mode"]["response_header_mode"] == "SKIP"
    tls = clusters["codex_upstream"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "chatgpt.com"


def test_ext_proc_metadata_namespaces(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    http = clusters["codex_upstream"]["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    options = http["http_filters"][0]["typed_config"]["metadata_options"]
    assert options["forwarding_namespaces"]["untyped"] == [gc.NS_ROUTING, gc.NS_REQUEST]
    assert options["receiving_namespaces"]["untyped"] == [gc.NS_ROUTING, gc.NS_VIEW]
    # The ext_proc, then the attempt's stamp (request id, account, pooled view) on its response, the body's
    # installation id made the account's (it reads the ext_proc's metadata), the reader of non-2xx answers, then
    # the codec.
    assert [f["name"] for f in http["http_filters"]] == [
        "envoy.filters.http.ext_proc",
        "pooler.attempt_of",
        "pooler.installation_body",
        "pooler.upstream_errors",
        "envoy.filters.http.upstream_codec",
    ]


def test_upstream_url_parsing() -> None:
    assert Upstream.parse("https://chatgpt.com").authority == "chatgpt.com"
    assert Upstream.parse("http://127.0.0.1:8000").authority == "127.0.0.1:8000"
    with pytest.raises(ValueError):
        Upstream.parse("ftp://x")
    with pytest.raises(ValueError):
        Upstream.parse("https://chatgpt.com/backend-api")
    assert Endpoint.parse("unix:/tmp/x.sock").path == "/tmp/x.sock"
    assert Endpoint.parse("127.0.0.1:9").port == 9
