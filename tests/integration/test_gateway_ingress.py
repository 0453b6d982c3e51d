"""Ingress trust: client allowlist (Envoy RBAC), trusted-proxy XFF, per-key allowlist (ext_proc).

Peers are distinct loopback addresses: 127.0.0.1 (allowed client), 127.0.0.2 (trusted proxy), 127.0.0.3
(untrusted, not allowed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pooler.models import PoolKey
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    options = {"client_allowlist": ("127.0.0.1/32", "203.0.113.0/24"), "trusted_proxies": ("127.0.0.2/32",)}
    with running_gateway(postgres_url, tmp_path_factory.mktemp("ingress"), gateway_options=options) as gateway:
        yield gateway


def _get(gw: Gateway, path: str, source: str, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as client:
        return client.get(f"{gw.url}{path}", headers=headers or {})


def test_client_allowlist_trusted_proxy_and_spoofed_xff(gw: Gateway) -> None:
    seeded = gw.seed_pool("ingress", ["acct-in1"])
    auth = {"Authorization": f"Bearer {seeded.key}"}
    usage = "/backend-api/wham/usage"
    assert _get(gw, usage, "127.0.0.1", auth).status_code == 200
    denied = _get(gw, usage, "127.0.0.3", auth)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ip_not_allowed"
    spoofed = _get(gw, usage, "127.0.0.3", {**auth, "x-forwarded-for": "203.0.113.7"})
    assert spoofed.status_code == 403  # XFF from an untrusted peer is ignored
    assert _get(gw, usage, "127.0.0.2", {**auth, "x-forwarded-for": "203.0.113.7"}).status_code == 200
    assert _get(gw, usage, "127.0.0.2", {**auth, "x-forwarded-for": "198.51.100.9"}).status_code == 403
    assert _get(gw, "/admin/", "127.0.0.3").status_code == 403  # admin routes too
    assert _get(gw, "/healthz", "127.0.0.3").status_code == 200


def test_per_key_allowlist_uses_the_derived_address(gw: Gateway) -> None:
    seeded = gw.seed_pool("ingress-key", ["acct-in2"])
    auth = {"Authorization": f"Bearer {seeded.key}"}

    def restrict(session: Any) -> None:
        session.query(PoolKey).filter_by(prefix=seeded.key_prefix).one().ip_allowlist = ["203.0.113.0/24"]

    gw.update(restrict)
    usage = "/backend-api/wham/usage"
    wait_until(lambda: _get(gw, usage, "127.0.0.1", auth).status_code == 403, timeout=15, what="key allowlist")
    r = _get(gw, usage, "127.0.0.1", {**auth, "x-pooler-client-ip": "203.0.113.7"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "ip_not_allowed"  # client copy overwritten
    assert _get(gw, usage, "127.0.0.2", {**auth, "x-forwarded-for": "203.0.113.7"}).status_code == 200
