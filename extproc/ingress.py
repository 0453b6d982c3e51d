"""Per-key client IP allowlists, checked in the ext_proc's authentication step.

The address comes from `x-pooler-client-ip`, which Envoy's downstream header_mutation sets on every request
from `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%` - the peer address, or the x-forwarded-for client when the peer
is a trusted proxy (original_ip_detection xff with `xff_trusted_cidrs`). Envoy overwrites any client-sent copy,
so a client cannot choose it; the processor strips it (x-pooler- prefix) before the upstream.
"""

from __future__ import annotations

from collections.abc import Mapping

from pooler import gateway_contract as gc
from pooler.gateway.features import GatewayFeatures, address_allowed


def key_allows_client(features: GatewayFeatures, key_id: int, headers: Mapping[str, str]) -> bool:
    allow = features.key(key_id).ip_allowlist
    if allow is None:
        return True
    # Fail closed: no derived address (the header_mutation is missing) means no match.
    return address_allowed(headers.get(gc.CLIENT_IP_HEADER), allow)
