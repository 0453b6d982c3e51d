"""Golden tests: the rendered Envoy config, byte for byte, for each deployment shape (pure, no Envoy).

Guards refactors of pooler/envoy_config: any change to the rendered text shows up here as a diff. Each case
writes golden/envoy/<case>.yaml; run with UPDATE_GOLDEN=1 to (re)write them, then review the diff. Whether
Envoy accepts the config is test_envoy_config.py's job (`envoy --mode validate`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from pooler.config import load_config
from pooler.envoy_config import (
    Endpoint,
    ExtprocOptions,
    ExtprocTls,
    GatewayConfig,
    config_from_env,
    render,
    with_extproc_options,
)

GOLDEN = Path(__file__).parent / "golden" / "envoy"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
SOCKETS = "/run/pooler"  # fixed paths: the rendered text must not depend on where the test runs

BASE = GatewayConfig(
    listen=Endpoint.tcp("127.0.0.1", 18080),
    admin=Endpoint.tcp("127.0.0.1", 19901),
    extproc=Endpoint.unix(f"{SOCKETS}/extproc.sock"),
    accesslog=Endpoint.unix(f"{SOCKETS}/accesslog.sock"),
    local=Endpoint.unix(f"{SOCKETS}/local.sock"),
    admin_app=Endpoint.tcp("127.0.0.1", 18081),
    upstream_url="http://127.0.0.1:18999",
)
TCP_EXTPROC = Endpoint.tcp("127.0.0.1", 18500)
TCP_ACCESSLOG = Endpoint.tcp("127.0.0.1", 18501)
# A Kubernetes-style deployment: Envoy in its own pod, every process behind a Service name.
SVC_EXTPROC = Endpoint.parse("pooler-extproc.pooler.svc:9000")
TLS_DIR = "/etc/pooler/extproc-tls"

CASES: dict[str, GatewayConfig] = {
    "simulator_unix": BASE,
    "https_unix": dataclasses.replace(BASE, upstream_url="https://chatgpt.com"),
    "https_ip_port": dataclasses.replace(BASE, upstream_url="https://10.0.0.5:8443"),
    "http_dns": dataclasses.replace(BASE, upstream_url="http://upstream.internal:8000"),
    "simulator_tcp_extproc": dataclasses.replace(BASE, extproc=TCP_EXTPROC, accesslog=TCP_ACCESSLOG),
    "https_tcp_extproc_retries": dataclasses.replace(
        BASE, upstream_url="https://chatgpt.com", num_retries=5, extproc=TCP_EXTPROC, accesslog=TCP_ACCESSLOG
    ),
    "access_log_stdout": dataclasses.replace(BASE, access_log_path="/dev/stdout"),
    "access_log_file_direct": dataclasses.replace(BASE, access_log_path="/var/log/pooler/envoy.json", direct=True),
    "direct": dataclasses.replace(BASE, direct=True),
    "direct_https": dataclasses.replace(BASE, upstream_url="https://chatgpt.com", direct=True),
    "two_replicas": dataclasses.replace(
        BASE,
        replicas=((Endpoint.unix(f"{SOCKETS}/extproc-1.sock"), Endpoint.unix(f"{SOCKETS}/accesslog-1.sock")),),
        replica_health_interval_seconds=0.5,
    ),
    # `pooler up`: two decision workers in three slots (one free for a rolling restart), two receivers in three.
    "pooler_up_workers": dataclasses.replace(
        BASE,
        worker_slots=(Endpoint.unix(f"{SOCKETS}/extproc.sock.1"), Endpoint.unix(f"{SOCKETS}/extproc.sock.2")),
        receiver_slots=(Endpoint.unix(f"{SOCKETS}/accesslog.sock.1"), Endpoint.unix(f"{SOCKETS}/accesslog.sock.2")),
        metrics_slots=tuple(Endpoint.unix(f"{SOCKETS}/accesslog.sock{n}.metrics") for n in ("", ".1", ".2")),
    ),
    "ingress_allowlist_trusted_proxies": dataclasses.replace(
        BASE,
        listen=Endpoint.tcp("0.0.0.0", 8080),
        client_allowlist=("10.1.0.0/16", "192.168.1.7", "2001:db8::/32"),
        trusted_proxies=("10.0.0.0/8",),
    ),
    "ingress_allowlist_only": dataclasses.replace(BASE, client_allowlist=("127.0.0.1",)),
    "tuned_timeouts_metrics_mcp": dataclasses.replace(
        BASE,
        extproc_timeout_seconds=0.25,
        accesslog_flush_seconds=1.5,
        buffer_limit_bytes=1048576,
        metrics=Endpoint.tcp("127.0.0.1", 19464),
        mcp_app=Endpoint.unix(f"{SOCKETS}/mcp.sock"),
    ),
    "tcp_extproc_default_metrics": dataclasses.replace(BASE, extproc=TCP_EXTPROC),
    "tcp_extproc_tls_ca_only": dataclasses.replace(
        BASE, extproc=TCP_EXTPROC, accesslog=TCP_EXTPROC, extproc_tls=ExtprocTls(f"{TLS_DIR}/ca.crt")
    ),
    "dns_extproc_mtls": dataclasses.replace(
        BASE,
        extproc=SVC_EXTPROC,
        accesslog=SVC_EXTPROC,
        metrics=Endpoint.parse("pooler-extproc.pooler.svc:9464"),
        admin_app=Endpoint.parse("pooler-admin.pooler.svc:8081"),
        mcp_app=Endpoint.parse("pooler-mcp.pooler.svc:8082"),
        extproc_tls=ExtprocTls(
            f"{TLS_DIR}/ca.crt", f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key", sni="pooler-extproc.pooler.svc"
        ),
    ),
    "dns_replicas_plaintext": dataclasses.replace(
        BASE,
        extproc=Endpoint.parse("pooler-extproc-0.pooler-extproc:9000"),
        accesslog=Endpoint.parse("pooler-extproc-0.pooler-extproc:9000"),
        replicas=((Endpoint.parse("pooler-extproc-1.pooler-extproc:9000"),) * 2,),
    ),
    "from_env_extproc_options": with_extproc_options(
        config_from_env(load_config({"POOLER_DATA_DIR": "/srv/pooler-golden"}), upstream_url="https://chatgpt.com"),
        ExtprocOptions(
            extproc="pooler-extproc.pooler.svc:9000",
            tls_ca=f"{TLS_DIR}/ca.crt",
            tls_cert=f"{TLS_DIR}/tls.crt",
            tls_key=f"{TLS_DIR}/tls.key",
            tls_sni="pooler-extproc.pooler.svc",
        ),
    ),
    "from_env": config_from_env(
        load_config(
            {
                "POOLER_DATA_DIR": "/srv/pooler-golden",
                "POOLER_LISTEN_HOST": "0.0.0.0",
                "POOLER_LISTEN_PORT": "8443",
                "POOLER_MCP_PORT": "8092",
                "POOLER_CLIENT_ALLOWLIST": "10.2.0.0/16",
                "POOLER_TRUSTED_PROXIES": "10.0.0.1",
            }
        ),
        upstream_url="https://chatgpt.com",
        num_retries=3,
        access_log_path="/dev/stdout",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_config_matches_golden(case: str) -> None:
    path = GOLDEN / f"{case}.yaml"
    text = render(CASES[case])
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(CASES)
