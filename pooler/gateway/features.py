"""Per-pool, per-key and instance settings of the gateway surface (docs/GATEWAY_SURFACE.md), read with the
routing snapshot.

Kept apart from `pooler.gateway.snapshot` (one line there calls `load_features`) so the snapshot's hot structures stay
as they are: the ext_proc looks these up by pool/key id only on the paths that need them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler.models import PoolKey, PoolSettings
from pooler.settings import get_setting

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Route families with their own admission limit (settings `admission_limit_<family>`).
ADMISSION_FAMILIES = ("responses", "responses_ws", "compact", "v1", "files", "media")


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; raises ValueError naming the bad entry (never silently widened)."""
    out: list[Network] = []
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {text!r}") from None
    return tuple(out)


def address_allowed(address: str | None, networks: tuple[Network, ...]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(frozen=True, slots=True)
class PoolFeatures:
    image_generation: bool = False
    pooled_rate_limits: bool = False


@dataclass(frozen=True, slots=True)
class KeyFeatures:
    ip_allowlist: tuple[Network, ...] | None = None
    """None = any address; an empty tuple (all entries blank) also means any."""
    hide_upstream_quota: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    limits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """family -> concurrent requests (absent or 0 = unlimited)."""
    queue: int = 0
    """Requests per family that may wait for a slot (0 = reject at once)."""
    queue_wait_seconds: float = 1.0
    retry_after_seconds: int = 1


@dataclass(frozen=True, slots=True)
class GatewayFeatures:
    pools: Mapping[int, PoolFeatures] = field(default_factory=lambda: MappingProxyType({}))
    keys: Mapping[int, KeyFeatures] = field(default_factory=lambda: MappingProxyType({}))
    """By key id."""
    admission: Admission = field(default_factory=Admission)
    transcription_max_bytes: int = 25 * 1024 * 1024
    file_pin_ttl_seconds: float = 7 * 86400.0

    def pool(self, pool_id: int) -> PoolFeatures:
        return self.pools.get(pool_id) or _NO_POOL

    def key(self, key_id: int) -> KeyFeatures:
        return self.keys.get(key_id) or _NO_KEY


_NO_POOL = PoolFeatures()
_NO_KEY = KeyFeatures()


def _int_setting(session: Session, name: str) -> int:
    value = get_setting(session, name)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def load_features(session: Session) -> GatewayFeatures:
    pools = {
        s.pool_id: PoolFeatures(bool(s.image_generation_enabled), bool(s.pooled_rate_limits))
        for s in session.scalars(select(PoolSettings))
        if s.image_generation_enabled or s.pooled_rate_limits
    }
    keys: dict[int, KeyFeatures] = {}
    for key in session.scalars(select(PoolKey)):
        allow: tuple[Network, ...] | None = None
        if key.ip_allowlist:
            try:
                allow = parse_networks(key.ip_allowlist) or None
            except ValueError:
                allow = ()  # a corrupt list fails closed: the key matches no address
        if allow is not None or key.hide_upstream_quota:
            keys[key.id] = KeyFeatures(allow, bool(key.hide_upstream_quota))
    limits = {f: n for f in ADMISSION_FAMILIES if (n := _int_setting(session, f"admission_limit_{f}")) > 0}
    wait_ms = _int_setting(session, "admission_queue_wait_ms")
    return GatewayFeatures(
        pools=MappingProxyType(pools),
        keys=MappingProxyType(keys),
        admission=Admission(
            MappingProxyType(limits),
            _int_setting(session, "admission_queue_size"),
            wait_ms / 1000.0,
            max(1, _int_setting(session, "admission_retry_after_seconds")),
        ),
        transcription_max_bytes=_int_setting(session, "transcription_max_bytes"),
        file_pin_ttl_seconds=float(_int_setting(session, "file_pin_ttl_seconds")),
    )
