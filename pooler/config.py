"""Process configuration from the environment.

Only what must exist before the database can be read lives here (database URL, secret keys, ports, paths).
Everything operational is a DB setting (see pooler.settings). `load_config()` is the single load step: it
reports every invalid variable at once.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
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
    )
    if problems:
        raise ConfigError(problems)
    return config
