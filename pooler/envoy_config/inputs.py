"""What the renderer takes: the typed GatewayConfig (with its endpoints, upstream URL and the client TLS to the
ext_proc), the one step that derives it from a process configuration, and the ext_proc address options every
rendering command shares (`ExtprocOptions`)."""

from __future__ import annotations

import dataclasses
import ipaddress
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
        """`unix:/path`, `/path` or `host:port` (host: an IP, `[IPv6]`, or a DNS name such as a Kubernetes
        Service `pooler-extproc.pooler.svc`)."""
        if spec.startswith("unix:"):
            return cls.unix(spec[5:])
        if spec.startswith("/"):
            return cls.unix(spec)
        host, _, port = spec.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            host = ""  # an unbracketed IPv6 address: its last group would read as the port
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"endpoint must be host:port ([IPv6]:port) or unix:/path, got {spec!r}")
        return cls.tcp(host, int(port))

    @property
    def is_dns(self) -> bool:
        """A TCP endpoint named by a DNS name (not an IP literal): Envoy must resolve it."""
        if self.host is None:
            return False
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False

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
class ExtprocTls:
    """Envoy's client TLS to the ext_proc and access-log clusters (the ext_proc's POOLER_EXTPROC_TLS_* side).

    `ca_file` verifies the ext_proc's certificate; `cert_file` + `key_file` (both or neither) are Envoy's client
    certificate when the ext_proc requires one (POOLER_EXTPROC_TLS_CLIENT_CA); `sni` is sent and the server
    certificate must carry it as a DNS SAN. Paths are as Envoy sees them (it reads the files, not the renderer)."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    sni: str | None = None

    def __post_init__(self) -> None:
        if not self.ca_file:
            raise ValueError("ext_proc TLS needs a CA file to verify the ext_proc's certificate")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("ext_proc TLS client certificate and key must be given together")


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
    accesslog_flush_seconds: float = 0.1
    buffer_limit_bytes: int = 16 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)
    direct: bool = False
    """Benchmark baseline only: the same listener and routes with no ext_proc and no gRPC access log."""
    first_event_hold: bool = True
    """Benchmark baseline only when False: the first-event filters without their response phases (the data path
    before SSE answers were held for their first event), to measure the hold's cost in the same run."""
    mcp_app: Endpoint = field(default_factory=lambda: Endpoint.tcp("127.0.0.1", 8082))
    """`python -m mcp_server` (served at /mcp; it checks its own tokens)."""
    metrics: Endpoint | None = None
    """The ext_proc's Prometheus endpoint; None = the unix socket beside the ext_proc socket (`<path>.metrics`)."""
    replicas: tuple[tuple[Endpoint, Endpoint], ...] = ()
    """Further ext_proc replicas as (ext_proc, access log) endpoints, beside `extproc`/`accesslog`. With any,
    both clusters get every replica plus gRPC health checks, so a draining replica stops receiving work."""
    worker_slots: tuple[Endpoint, ...] = ()
    """Further ext_proc endpoints with no access log of their own: `pooler up`'s other decision-worker slots,
    one of them normally empty (the surge slot a rolling restart starts a replacement in; its failing health
    check keeps traffic off it)."""
    receiver_slots: tuple[Endpoint, ...] = ()
    """Further access-log receiver endpoints, in failover order after `accesslog` (Envoy priority = position):
    `pooler up` runs two receivers in three slots, so every entry goes to the first healthy one and a receiver
    that stops or dies is replaced by the next at once."""
    metrics_slots: tuple[Endpoint, ...] = ()
    """/metrics endpoints in the same failover order (connect-checked); when given they replace `metrics`:
    `pooler up` scrapes the receiver that gets the access log (request counts, tokens, errors)."""
    replica_health_interval_seconds: float = 1.0
    client_allowlist: tuple[str, ...] = ()
    """Client IPs/CIDRs allowed on every route (empty: everyone). Checked against the derived client address."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers whose x-forwarded-for is believed (empty: never; the TCP peer is the client)."""
    extproc_tls: ExtprocTls | None = None
    """Client TLS on the pooler_extproc and pooler_accesslog clusters (every endpoint must then be TCP)."""


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


@dataclass(frozen=True)
class ExtprocOptions:
    """Where Envoy reaches the ext_proc, as the flags of `pooler envoy-config` give it (None: keep the config's).

    Shared by every command that renders, so one address syntax and one set of checks: `extproc`/`accesslog`/
    `metrics` are `host:port` or `unix:/path`; the access log goes to `extproc` unless given; TLS needs TCP."""

    extproc: str | None = None
    accesslog: str | None = None
    metrics: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_sni: str | None = None


def with_extproc_options(config: GatewayConfig, options: ExtprocOptions) -> GatewayConfig:
    """`config` with the ext_proc endpoints and client TLS of `options`; ValueError names the bad option."""
    changes: dict[str, Any] = {}
    if options.extproc is not None:
        # Both services run in one gRPC server on every address it binds, so one address serves both.
        changes["extproc"] = changes["accesslog"] = _option_endpoint("--extproc", options.extproc)
    if options.accesslog is not None:
        changes["accesslog"] = _option_endpoint("--accesslog", options.accesslog)
    if options.metrics is not None:
        changes["metrics"] = _option_endpoint("--metrics", options.metrics)
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ValueError("--extproc-tls-cert and --extproc-tls-key must be given together")
    if options.tls_ca is not None:
        changes["extproc_tls"] = ExtprocTls(
            ca_file=options.tls_ca, cert_file=options.tls_cert, key_file=options.tls_key, sni=options.tls_sni
        )
    elif any(value is not None for value in (options.tls_cert, options.tls_key, options.tls_sni)):
        raise ValueError("--extproc-tls-cert/-key/-sni need --extproc-tls-ca (the CA of the ext_proc's certificate)")
    result = dataclasses.replace(config, **changes)
    if result.extproc_tls is not None and (result.extproc.path is not None or result.accesslog.path is not None):
        raise ValueError("--extproc-tls-* need a TCP --extproc (and --accesslog): the unix sockets are plaintext")
    return result


def _option_endpoint(flag: str, spec: str) -> Endpoint:
    try:
        return Endpoint.parse(spec)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def num_retries_for(max_attempts: list[int]) -> int:
    """Envoy's retry count is the largest any pool needs; the ext_proc stops each pool at its own limit."""
    return max([DEFAULT_NUM_RETRIES + 1, *max_attempts]) - 1
