"""Process configuration from the environment.

Only what must exist before the database can be read lives here (database URL, secret keys, ports, paths).
Everything operational is a DB setting (see pooler.settings). `load_config()` is the single load step: it
reports every invalid variable at once.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pooler.errors import ConfigError

DEFAULT_DATA_DIR = "var"
DEFAULT_DATABASE_URL = "sqlite:///var/pooler.db"


@dataclass(frozen=True)
class Config:
    database_url: str
    data_dir: Path
    secret_keys: str | None
    """Keyring spec `id:base64key,id:base64key` (first = current); None until resolved from the keyring file."""
    key_pepper: str | None
    """Server pepper for Pool key hashes (base64, 32 bytes)."""
    keyring_file: Path
    listen_host: str
    listen_port: int
    admin_port: int
    envoy_admin_port: int
    mcp_port: int
    """The MCP server (`python -m mcp_server`) listens on 127.0.0.1 here; Envoy routes `/mcp` to it."""
    extproc_socket: Path
    accesslog_socket: Path
    log_level: str
    client_allowlist: tuple[str, ...] = ()
    """POOLER_CLIENT_ALLOWLIST: comma-separated IPs/CIDRs allowed on every route (empty: everyone)."""
    trusted_proxies: tuple[str, ...] = ()
    """POOLER_TRUSTED_PROXIES: comma-separated CIDRs whose x-forwarded-for is believed (empty: never)."""
    extproc_listen: ListenAddress | None = None
    """POOLER_EXTPROC_LISTEN: the ext_proc also serves ext_proc, access log and gRPC health on this TCP address
    (for an Envoy in another pod or host); the unix sockets are served either way."""
    extproc_tls: ServerTls | None = None
    """POOLER_EXTPROC_TLS_CERT/_KEY (+ _CLIENT_CA for mTLS): TLS on the ext_proc's TCP address."""
    metrics_listen: ListenAddress | None = None
    """POOLER_METRICS_LISTEN: the ext_proc also serves /metrics on this TCP address (beside its unix socket)."""
    mcp_host: str = "127.0.0.1"
    """POOLER_MCP_HOST: the MCP server's bind address (loopback unless it runs in a pod of its own)."""


@dataclass(frozen=True)
class ListenAddress:
    """A TCP address to listen on: `host:port`, an IPv6 host in brackets (`[::]:9000`)."""

    host: str
    port: int

    @property
    def target(self) -> str:
        """`host:port` as gRPC and humans write it (IPv6 bracketed)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerTls:
    """PEM files for the ext_proc's TCP port; with `client_ca_file`, clients must present a certificate it signed."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True)
class ServerTlsMaterial:
    """The contents of a ServerTls's files, checked to be what they claim (read by the ext_proc at start)."""

    cert_chain: bytes
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = None


def _int(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name} must be an integer, got {raw!r}")
        return default
    if not 0 <= value <= 65535:
        problems.append(f"{name} must be a port number 0-65535, got {value}")
    return value


def _cidrs(env: Mapping[str, str], name: str, problems: list[str]) -> tuple[str, ...]:
    values = tuple(v.strip() for v in env.get(name, "").split(",") if v.strip())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            problems.append(f"{name} must list IP addresses or CIDRs, got {value!r}")
    return values


def _listen(env: Mapping[str, str], name: str, problems: list[str]) -> ListenAddress | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 host must be bracketed, or its last group would read as the port
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        problems.append(f"{name} must be host:port with a port 1-65535 (IPv6 as [::]:9000), got {raw!r}")
        return None
    return ListenAddress(host, int(port))


TLS_CERT = "POOLER_EXTPROC_TLS_CERT"
TLS_KEY = "POOLER_EXTPROC_TLS_KEY"
TLS_CLIENT_CA = "POOLER_EXTPROC_TLS_CLIENT_CA"


def _server_tls(env: Mapping[str, str], problems: list[str]) -> ServerTls | None:
    cert, key, client_ca = (env.get(name, "").strip() for name in (TLS_CERT, TLS_KEY, TLS_CLIENT_CA))
    if not (cert or key or client_ca):
        return None
    if bool(cert) != bool(key):
        problems.append(f"{TLS_CERT} and {TLS_KEY} must be set together")
        return None
    if not cert:
        problems.append(f"{TLS_CLIENT_CA} needs {TLS_CERT} and {TLS_KEY} (the server's own certificate)")
        return None
    if not env.get("POOLER_EXTPROC_LISTEN", "").strip():
        # TLS applies to the TCP port only; accepting it without one would look like protection that is not there.
        # (The raw variable, not the parsed one: an invalid POOLER_EXTPROC_LISTEN is already reported.)
        problems.append(f"{TLS_CERT} needs POOLER_EXTPROC_LISTEN (TLS is served on the TCP address)")
        return None
    return ServerTls(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def read_server_tls(tls: ServerTls) -> ServerTlsMaterial:
    """Reads and checks the PEM files of `tls`; every unreadable or invalid one is reported at once (ConfigError,
    naming the variable and path, never the contents)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    problems: list[str] = []

    def read(name: str, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError as exc:
            problems.append(f"{name}: cannot read {path} ({exc.strerror or type(exc).__name__})")
            return None

    def certificates(name: str, path: Path, data: bytes | None) -> list[x509.Certificate]:
        if data is None:
            return []
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError:
            found = []
        if not found:
            problems.append(f"{name}: {path} holds no PEM certificate")
        return found

    cert_data = read(TLS_CERT, tls.cert_file)
    key_data = read(TLS_KEY, tls.key_file)
    ca_data = read(TLS_CLIENT_CA, tls.client_ca_file) if tls.client_ca_file is not None else None
    chain = certificates(TLS_CERT, tls.cert_file, cert_data)
    if tls.client_ca_file is not None:
        certificates(TLS_CLIENT_CA, tls.client_ca_file, ca_data)
    if key_data is not None:
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            problems.append(f"{TLS_KEY}: {tls.key_file} is not an unencrypted PEM private key")
        else:
            raw = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            if chain and key.public_key().public_bytes(*raw) != chain[0].public_key().public_bytes(*raw):
                problems.append(f"{TLS_KEY}: {tls.key_file} is not the key of the certificate in {TLS_CERT}")
    if problems or cert_data is None or key_data is None:
        raise ConfigError(problems)
    return ServerTlsMaterial(cert_data, key_data, ca_data)


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    problems: list[str] = []
    data_dir = Path(env.get("POOLER_DATA_DIR", DEFAULT_DATA_DIR))
    database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'pooler.db'}"
    if not (database_url.startswith("sqlite") or database_url.startswith("postgresql")):
        problems.append(
            f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, got scheme {database_url.split(':')[0]!r}"
        )
    if database_url.startswith("postgresql://") or database_url.startswith("postgres://"):
        # psycopg 3 is the only PostgreSQL driver we ship.
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    log_level = env.get("POOLER_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        problems.append(f"POOLER_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    extproc_listen = _listen(env, "POOLER_EXTPROC_LISTEN", problems)
    config = Config(
        database_url=database_url,
        data_dir=data_dir,
        secret_keys=env.get("POOLER_SECRET_KEYS") or None,
        key_pepper=env.get("POOLER_KEY_PEPPER") or None,
        keyring_file=Path(env.get("POOLER_KEYRING_FILE", str(data_dir / "keyring.env"))),
        listen_host=env.get("POOLER_LISTEN_HOST", "127.0.0.1"),
        listen_port=_int(env, "POOLER_LISTEN_PORT", 8080, problems),
        admin_port=_int(env, "POOLER_ADMIN_PORT", 8081, problems),
        envoy_admin_port=_int(env, "POOLER_ENVOY_ADMIN_PORT", 9901, problems),
        mcp_port=_int(env, "POOLER_MCP_PORT", 8082, problems),
        extproc_socket=Path(env.get("POOLER_EXTPROC_SOCKET", str(data_dir / "extproc.sock"))),
        accesslog_socket=Path(env.get("POOLER_ACCESSLOG_SOCKET", str(data_dir / "accesslog.sock"))),
        log_level=log_level,
        client_allowlist=_cidrs(env, "POOLER_CLIENT_ALLOWLIST", problems),
        trusted_proxies=_cidrs(env, "POOLER_TRUSTED_PROXIES", problems),
        extproc_listen=extproc_listen,
        extproc_tls=_server_tls(env, problems),
        metrics_listen=_listen(env, "POOLER_METRICS_LISTEN", problems),
        mcp_host=env.get("POOLER_MCP_HOST") or "127.0.0.1",
    )
    if problems:
        raise ConfigError(problems)
    return config
