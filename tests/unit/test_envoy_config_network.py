"""A networked ext_proc in the rendered Envoy config: DNS-named endpoints as STRICT_DNS clusters, client TLS to
the ext_proc and access-log clusters, the shared `--extproc*` options and the `pooler envoy-config` flags.

Every new shape is also accepted by the real Envoy (`envoy --mode validate`, with real certificate files)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pooler.envoy_config import (
    Endpoint,
    ExtprocOptions,
    ExtprocTls,
    GatewayConfig,
    metrics_endpoint,
    render,
    with_extproc_options,
)
from tests.support.cli import Cli, cli_env
from tests.support.envoy_configs import sample_config
from tests.support.processes import VENV_BIN
from tests.support.tls import Pki, make_pki

SVC = "pooler-extproc.pooler.svc"


_base = sample_config


def _clusters(config: GatewayConfig) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(render(config))
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def _validate(config: GatewayConfig, tmp: Path) -> None:
    path = tmp / "envoy.yaml"
    path.write_text(render(config))
    result = subprocess.run(
        [str(VENV_BIN / "envoy"), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _mtls(pki: Pki, sni: str | None = SVC) -> ExtprocTls:
    return ExtprocTls(str(pki.ca_cert), str(pki.client_cert), str(pki.client_key), sni=sni)


def _shapes(tmp: Path, pki: Pki) -> dict[str, GatewayConfig]:
    base = _base(tmp)
    dns = Endpoint.parse(f"{SVC}:9000")
    return {
        # Kubernetes: every other process behind a Service name, ext_proc over mTLS with SNI.
        "dns_everything_mtls": dataclasses.replace(
            base,
            extproc=dns,
            accesslog=dns,
            metrics=Endpoint.parse(f"{SVC}:9464"),
            admin_app=Endpoint.parse("pooler-admin.pooler.svc:8081"),
            mcp_app=Endpoint.parse("pooler-mcp.pooler.svc:8082"),
            extproc_tls=_mtls(pki),
        ),
        # TLS by IP, server verified by the CA only (no client certificate, no SNI).
        "ip_tls_ca_only": dataclasses.replace(
            base,
            extproc=Endpoint.tcp("127.0.0.1", 18500),
            accesslog=Endpoint.tcp("127.0.0.1", 18500),
            extproc_tls=ExtprocTls(str(pki.ca_cert)),
        ),
        # Replicas by name, health-checked over mTLS; a plaintext DNS-named access log on its own port.
        "dns_replicas_mtls": dataclasses.replace(
            base,
            extproc=Endpoint.parse("extproc-0.pooler-extproc:9000"),
            accesslog=Endpoint.parse("extproc-0.pooler-extproc:9000"),
            replicas=((Endpoint.parse("extproc-1.pooler-extproc:9000"), Endpoint.parse("10.0.0.7:9000")),),
            extproc_tls=_mtls(pki, sni=None),
        ),
        "dns_plaintext": dataclasses.replace(base, extproc=dns, accesslog=Endpoint.parse(f"{SVC}:9001")),
    }


@pytest.mark.parametrize("shape", ["dns_everything_mtls", "ip_tls_ca_only", "dns_replicas_mtls", "dns_plaintext"])
def test_networked_shapes_validate(shape: str, tmp_path: Path, pki: Pki) -> None:
    _validate(_shapes(tmp_path, pki)[shape], tmp_path)


def test_dns_names_make_strict_dns_clusters_and_ips_and_paths_stay_static(tmp_path: Path, pki: Pki) -> None:
    clusters = _clusters(_shapes(tmp_path, pki)["dns_everything_mtls"])
    for name in ("pooler_extproc", "pooler_accesslog", "pooler_metrics", "pooler_admin", "pooler_mcp"):
        assert clusters[name]["type"] == "STRICT_DNS", name
        assert clusters[name]["dns_lookup_family"] == "V4_PREFERRED", name
    address = clusters["pooler_extproc"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert address == {"address": {"socket_address": {"address": SVC, "port_value": 9000}}}

    plain = _clusters(dataclasses.replace(_base(tmp_path), extproc=Endpoint.parse("[::1]:9000")))
    for name in ("pooler_extproc", "pooler_accesslog", "pooler_metrics", "pooler_admin", "pooler_mcp"):
        assert plain[name]["type"] == "STATIC", name
    assert "dns_lookup_family" not in plain["pooler_mcp"]  # built in Python: only where it applies
    assert plain["pooler_extproc"]["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"


def test_mtls_transport_socket_on_both_grpc_clusters(tmp_path: Path, pki: Pki) -> None:
    clusters = _clusters(_shapes(tmp_path, pki)["dns_everything_mtls"])
    for name in ("pooler_extproc", "pooler_accesslog"):
        socket = clusters[name]["transport_socket"]
        assert socket["name"] == "envoy.transport_sockets.tls"
        context = socket["typed_config"]
        assert context["sni"] == SVC
        common = context["common_tls_context"]
        assert common["alpn_protocols"] == ["h2"]  # gRPC: HTTP/2 negotiated by ALPN
        assert common["validation_context"]["trusted_ca"] == {"filename": str(pki.ca_cert)}
        assert common["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": SVC}}
        ]
        assert common["tls_certificates"] == [
            {"certificate_chain": {"filename": str(pki.client_cert)}, "private_key": {"filename": str(pki.client_key)}}
        ]
    # Only the ext_proc's clusters: the metrics route and the rest stay plaintext HTTP.
    assert "transport_socket" not in clusters["pooler_metrics"]

    ca_only = _clusters(_shapes(tmp_path, pki)["ip_tls_ca_only"])["pooler_extproc"]["transport_socket"]
    common = ca_only["typed_config"]["common_tls_context"]
    assert "sni" not in ca_only["typed_config"] and "tls_certificates" not in common
    assert "match_typed_subject_alt_names" not in common["validation_context"]


def test_impossible_shapes_are_refused(tmp_path: Path, pki: Pki) -> None:
    base = _base(tmp_path)
    with pytest.raises(ValueError, match="TCP endpoints"):
        render(dataclasses.replace(base, extproc_tls=_mtls(pki)))  # unix sockets are served in plaintext
    with pytest.raises(ValueError, match="mix DNS-named endpoints and unix sockets"):
        render(dataclasses.replace(base, replicas=((Endpoint.parse(f"{SVC}:9000"), base.accesslog),)))
    with pytest.raises(ValueError, match="together"):
        ExtprocTls(str(pki.ca_cert), cert_file=str(pki.client_cert))


def test_endpoint_parsing() -> None:
    assert Endpoint.parse(f"{SVC}:9000") == Endpoint.tcp(SVC, 9000)
    assert Endpoint.parse(f"{SVC}:9000").is_dns
    assert not Endpoint.parse("10.1.2.3:9000").is_dns
    assert Endpoint.parse("[fd00::7]:9000") == Endpoint.tcp("fd00::7", 9000)
    assert not Endpoint.parse("[fd00::7]:9000").is_dns
    assert not Endpoint.parse("unix:/run/x.sock").is_dns
    for bad in ("fd00::7:9000", "host:0", "host:65536", ":9000", "host"):
        with pytest.raises(ValueError):
            Endpoint.parse(bad)


def test_metrics_follow_a_tcp_extproc_to_its_host(tmp_path: Path) -> None:
    config = dataclasses.replace(_base(tmp_path), extproc=Endpoint.parse(f"{SVC}:9000"))
    assert metrics_endpoint(config) == Endpoint.tcp(SVC, 9464)
    assert metrics_endpoint(_base(tmp_path)) == Endpoint.unix(f"{tmp_path / 'extproc.sock'}.metrics")


def test_extproc_options(tmp_path: Path, pki: Pki) -> None:
    base = _base(tmp_path)
    assert with_extproc_options(base, ExtprocOptions()) == base
    tcp = with_extproc_options(base, ExtprocOptions(extproc=f"{SVC}:9000"))
    assert tcp.extproc == tcp.accesslog == Endpoint.tcp(SVC, 9000)  # the access log follows the ext_proc
    split = with_extproc_options(base, ExtprocOptions(extproc="unix:/run/x.sock", accesslog="/run/a.sock"))
    assert (split.extproc, split.accesslog) == (Endpoint.unix("/run/x.sock"), Endpoint.unix("/run/a.sock"))
    tls = with_extproc_options(
        base,
        ExtprocOptions(
            extproc="10.0.0.9:9000",
            metrics="10.0.0.9:9100",
            tls_ca="/ca.pem",
            tls_cert="/c.pem",
            tls_key="/c.key",
            tls_sni="x",
        ),
    )
    assert tls.extproc_tls == ExtprocTls("/ca.pem", "/c.pem", "/c.key", "x")
    assert tls.metrics == Endpoint.tcp("10.0.0.9", 9100)

    refusals = {
        "--extproc: endpoint must be": ExtprocOptions(extproc="pooler-extproc"),
        "--extproc-tls-cert and --extproc-tls-key must be given together": ExtprocOptions(
            extproc="10.0.0.9:9000", tls_ca="/ca", tls_cert="/c"
        ),
        "need --extproc-tls-ca": ExtprocOptions(extproc="10.0.0.9:9000", tls_sni="x"),
        "need a TCP --extproc": ExtprocOptions(tls_ca="/ca"),
    }
    for message, options in refusals.items():
        with pytest.raises(ValueError, match=message):
            with_extproc_options(base, options)


def test_envoy_config_flags(tmp_path: Path, pki: Pki) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'pooler.db'}"
    cli = Cli(cli_env(url, data_dir), data_dir, url)
    fixed = ("envoy-config", "--upstream", "http://127.0.0.1:18999", "--num-retries", "2")
    out = tmp_path / "envoy.yaml"
    cli.ok(
        *fixed,
        "--out",
        str(out),
        "--extproc",
        f"{SVC}:9000",
        "--metrics",
        f"{SVC}:9464",
        "--extproc-tls-ca",
        str(pki.ca_cert),
        "--extproc-tls-cert",
        str(pki.client_cert),
        "--extproc-tls-key",
        str(pki.client_key),
        "--extproc-tls-sni",
        SVC,
    )
    clusters = {c["name"]: c for c in yaml.safe_load(out.read_text())["static_resources"]["clusters"]}
    for name in ("pooler_extproc", "pooler_accesslog", "pooler_metrics"):
        assert clusters[name]["type"] == "STRICT_DNS"
    assert clusters["pooler_accesslog"]["transport_socket"]["typed_config"]["sni"] == SVC
    validated = subprocess.run(
        [str(VENV_BIN / "envoy"), "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60
    )
    assert validated.returncode == 0, validated.stderr

    # Defaults unchanged: today's unix sockets, plaintext.
    default = {c["name"]: c for c in yaml.safe_load(cli.ok(*fixed))["static_resources"]["clusters"]}
    address = default["pooler_extproc"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert address["address"] == {"pipe": {"path": str((data_dir / "extproc.sock").resolve())}}

    assert "need a TCP --extproc" in cli.fails(*fixed, "--extproc-tls-ca", str(pki.ca_cert))
    assert "--accesslog: endpoint must be" in cli.fails(*fixed, "--accesslog", "nowhere")
