"""What the renderer takes: the typed GatewayConfig (with its endpoints and upstream URL) and the one step
that derives it from a process configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pooler.config import Config

DEFAULT_UPSTREAM_URL = "https://chatgpt.com"
DEFAULT_NUM_RETRIES = 2  # PoolSettings.max_attempts defaults to 3


@dataclass(frozen=True)
class Endpoint:
    """A TCP host:port or a unix socket path (exactly one)."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def tcp(cls, host: str, port: int) -> Endpoint:
        return cls(host=host, port=port)

    @classmethod
    def unix(cls, path: str | Path) -> Endpoint:
        return cls(path=str(path))

    @classmethod
    def parse(cls, spec: str) -> Endpoint:
        """`unix:/path`, `/path` or `host:port`."""
        if spec.startswith("unix:"):
            return cls.unix(spec[5:])
        if spec.startswith("/"):
            return cls.unix(spec)
        host, _, port = spec.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"endpoint must be host:port or unix:/path, got {spec!r}")
        return cls.tcp(host, int(port))

    def envoy_address(self) -> dict[str, Any]:
        if self.path is not None:
            return {"pipe": {"path": self.path}}
        if self.host is None or self.port is None:
            raise ValueError("endpoint needs host and port, or a path")
        return {"socket_address": {"address": self.host, "port_value": self.port}}


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, got {url!r}")
        if parts.path not in ("", "/"):
            raise ValueError(f"upstream URL must have no path (routes keep the client's path), got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(scheme=parts.scheme, host=parts.hostname, port=port)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        default = 443 if self.tls else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        return all(part.isdigit() for part in self.host.split(".")) and self.host.count(".") == 3


@dataclass(frozen=True)
class GatewayConfig:
    """Everything that varies between deployments of the data plane."""

    listen: Endpoint
    admin: Endpoint
    extproc: Endpoint
    accesslog: Endpoint
    local: Endpoint
    """Unix socket of the internal listener behind gateway-answered routes (never reached in normal operation)."""
    admin_app: Endpoint
    upstream_url: str = DEFAULT_UPSTREAM_URL
    num_retries: int = DEFAULT_NUM_RETRIES
    access_log_path: str | None = None
    """A metadata-only JSON access log file (or /dev/stdout); None = gRPC access log only."""
    extproc_timeout_seconds: float = 2.0
    accesslog_flush_seconds: float = 0.5
    buffer_limit_bytes: int = 16 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)
    direct: bool = False
    """Benchmark baseline only: the same listener and routes with no ext_proc and no gRPC access log."""
    mcp_app: Endpoint = field(default_factory=lambda: Endpoint.tcp("127.0.0.1", 8082))
    """`python -m mcp_server` (served at /mcp; it checks its own tokens)."""
    metrics: Endpoint | None = None
    """The ext_proc's Prometheus endpoint; None = the unix socket beside the ext_proc socket (`<path>.metrics`)."""
    replicas: tuple[tuple[Endpoint, Endpoint], ...] = ()
    """Further ext_proc replicas as (ext_proc, access log) endpoints, beside `extproc`/`accesslog`. With any,
    both clusters get every replica plus gRPC health checks, so a draining replica stops receiving work."""
    replica_health_interval_seconds: float = 1.0
    client_allowlist: tuple[str, ...] = ()
    """Client IPs/CIDRs allowed on every route (empty: everyone). Checked against the derived client address."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers whose x-forwarded-for is believed (empty: never; the TCP peer is the client)."""


def config_from_env(
    config: Config,
    *,
    upstream_url: str = DEFAULT_UPSTREAM_URL,
    num_retries: int = DEFAULT_NUM_RETRIES,
    access_log_path: str | None = None,
    client_allowlist: tuple[str, ...] = (),
    trusted_proxies: tuple[str, ...] = (),
) -> GatewayConfig:
    """The GatewayConfig a process configuration (ports, socket paths) describes."""
    return GatewayConfig(
        listen=Endpoint.tcp(config.listen_host, config.listen_port),
        admin=Endpoint.tcp("127.0.0.1", config.envoy_admin_port),
        extproc=Endpoint.unix(config.extproc_socket.resolve()),
        accesslog=Endpoint.unix(config.accesslog_socket.resolve()),
        local=Endpoint.unix((config.data_dir / "gateway-local.sock").resolve()),
        admin_app=Endpoint.tcp("127.0.0.1", config.admin_port),
        mcp_app=Endpoint.tcp("127.0.0.1", config.mcp_port),
        upstream_url=upstream_url,
        num_retries=num_retries,
        access_log_path=access_log_path,
        client_allowlist=client_allowlist or config.client_allowlist,
        trusted_proxies=trusted_proxies or config.trusted_proxies,
    )


def num_retries_for(max_attempts: list[int]) -> int:
    """Envoy's retry count is the largest any pool needs; the ext_proc stops each pool at its own limit."""
    return max([DEFAULT_NUM_RETRIES + 1, *max_attempts]) - 1
