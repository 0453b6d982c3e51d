"""Who may connect: the RBAC client allowlist and which proxies' x-forwarded-for is believed."""

from __future__ import annotations

import ipaddress
from typing import Any

from pooler.envoy_config.inputs import GatewayConfig


def build_ingress(config: GatewayConfig) -> dict[str, Any]:
    """RBAC client allowlist (remote_ip = the derived client address) and the trusted-proxy XFF extension."""
    for cidr in (*config.client_allowlist, *config.trusted_proxies):
        ipaddress.ip_network(cidr, strict=False)  # ValueError here, not in Envoy
    rbac: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}
    if config.client_allowlist:
        ranges = [_cidr(c) for c in config.client_allowlist]
        rbac["rules"] = {
            "action": "ALLOW",
            "policies": {
                "client-allowlist": {
                    "permissions": [{"any": True}],
                    "principals": [{"remote_ip": r} for r in ranges],
                },
                # Liveness probes come from wherever the orchestrator runs.
                "healthz": {
                    "permissions": [{"url_path": {"path": {"exact": "/healthz"}}}],
                    "principals": [{"any": True}],
                },
            },
        }
    detection: list[dict[str, Any]] = []
    if config.trusted_proxies:
        detection.append(
            {
                "name": "envoy.http.original_ip_detection.xff",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig",
                    "xff_trusted_cidrs": {"cidrs": [_cidr(c) for c in config.trusted_proxies]},
                },
            }
        )
    return {"rbac_config": rbac, "original_ip_detection": detection, "use_remote_address": not detection}


def _cidr(text: str) -> dict[str, Any]:
    net = ipaddress.ip_network(text.strip(), strict=False)
    return {"address_prefix": str(net.network_address), "prefix_len": net.prefixlen}
