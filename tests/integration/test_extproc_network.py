"""The ext_proc over the network: the real Envoy reaches the real ext_proc only over TCP (POOLER_EXTPROC_LISTEN),
with mutual TLS from a throwaway CA, for both the per-attempt ext_proc and the gRPC access log; gRPC health on the
same port answers a client with a certificate and refuses one without; /metrics is served on its own TCP port.
A second gateway names the ext_proc `localhost`, so Envoy resolves it (STRICT_DNS clusters)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.gateway import Gateway, running_gateway
from tests.support.simulator import turn_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("gateway-mtls"), extproc_tls=True) as gateway:
        yield gateway


def _envoy_stats(gw: Gateway, prefix: str) -> dict[str, int]:
    text = httpx.get(f"http://127.0.0.1:{gw.envoy_admin_port}/stats", params={"filter": prefix}, timeout=5).text
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            stats[name] = int(value)
    return stats


def _clusters(gw: Gateway) -> dict[str, dict[str, object]]:
    doc = yaml.safe_load((gw.log_dir / "envoy.yaml").read_text())
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def _health(gw: Gateway, credentials: grpc.ChannelCredentials) -> int:
    assert gw.pki is not None and gw.extproc_tcp_port is not None
    options = [("grpc.ssl_target_name_override", gw.pki.server_name)]
    with grpc.secure_channel(f"127.0.0.1:{gw.extproc_tcp_port}", credentials, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)


def test_codex_request_through_envoy_to_an_extproc_over_mtls(gw: Gateway) -> None:
    # Envoy's config names no unix socket for the ext_proc or its access log: only the TLS TCP port.
    clusters = _clusters(gw)
    for name in ("pooler_extproc", "pooler_accesslog"):
        endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]  # type: ignore[index]
        assert endpoint["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": gw.extproc_tcp_port}}
        assert clusters[name]["transport_socket"]["name"] == "envoy.transport_sockets.tls"  # type: ignore[index]

    seeded = gw.seed_pool("mtls-pool", ["acct-t1"])
    response = httpx.post(
        f"{gw.codex_base}/responses",
        json=turn_body("over mTLS"),
        headers={"Authorization": f"Bearer {seeded.key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert gw.simulator.client.journal()[-1]["account"] == "acct-t1"  # the ext_proc picked and swapped

    rows = gw.wait_for_logs(1, pool_id=seeded.pool_id, route_family="responses")
    assert rows[0].status_code == 200 and rows[0].key_prefix == seeded.key_prefix
    assert rows[0].account_id == seeded.accounts["acct-t1"]

    # Both gRPC clusters really spoke TLS (handshakes, no failures), the access log included.
    stats = _envoy_stats(gw, r"cluster\.pooler_(extproc|accesslog)\.ssl\.")
    assert stats.get("cluster.pooler_extproc.ssl.handshake", 0) >= 1, stats
    assert stats.get("cluster.pooler_accesslog.ssl.handshake", 0) >= 1, stats
    assert stats.get("cluster.pooler_extproc.ssl.connection_error", 0) == 0, stats


def test_health_on_the_tcp_port_requires_a_client_certificate(gw: Gateway) -> None:
    assert gw.pki is not None
    ca = gw.pki.ca_cert.read_bytes()
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=gw.pki.client_key.read_bytes(),
        certificate_chain=gw.pki.client_cert.read_bytes(),
    )
    assert _health(gw, with_cert) == health_pb2.HealthCheckResponse.SERVING

    with pytest.raises(grpc.RpcError) as refused:
        _health(gw, grpc.ssl_channel_credentials(root_certificates=ca))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    # Plaintext on the TLS port is refused too.
    with (
        grpc.insecure_channel(f"127.0.0.1:{gw.extproc_tcp_port}") as channel,
        pytest.raises(grpc.RpcError) as plaintext,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE


def test_metrics_on_their_tcp_port_and_through_envoy(gw: Gateway) -> None:
    listen = gw.env["POOLER_METRICS_LISTEN"]
    direct = httpx.get(f"http://{listen}/metrics", timeout=10)
    assert direct.status_code == 200 and "pooler_extproc_phase_seconds" in direct.text
    metrics = _clusters(gw)["pooler_metrics"]
    endpoint = metrics["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]  # type: ignore[index]
    assert endpoint["address"]["socket_address"]["port_value"] == int(listen.rpartition(":")[2])
    # Through the gateway port the metrics token is required even while none is configured; the JSON refusal
    # comes from the ext_proc, so Envoy did route there over TCP.
    routed = httpx.get(f"{gw.url}/metrics", timeout=10)
    assert routed.status_code == 401 and routed.json()["error"]["code"] == "metrics_token_required"


def test_extproc_named_by_dns(postgres_url: str, tmp_path: Path) -> None:
    with running_gateway(postgres_url, tmp_path / "gw", extproc_tcp=True, extproc_host="localhost") as dns_gw:
        clusters = _clusters(dns_gw)
        assert clusters["pooler_extproc"]["type"] == "STRICT_DNS"
        assert clusters["pooler_accesslog"]["type"] == "STRICT_DNS"
        seeded = dns_gw.seed_pool("dns-pool", ["acct-d1"])
        response = httpx.post(
            f"{dns_gw.codex_base}/responses",
            json=turn_body("by name"),
            headers={"Authorization": f"Bearer {seeded.key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert dns_gw.wait_for_logs(1, pool_id=seeded.pool_id)[0].status_code == 200
