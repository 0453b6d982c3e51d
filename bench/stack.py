"""The processes one benchmark run needs, under the same supervisor `pooler up` uses (logs go to a file).

Upstreams: the simulator (flat out, budgets raised so 10,000s of requests never hit a quota) and nginx (a fixed
Codex SSE reply: the cheap upstream for the header-path comparison). For each upstream one *direct* Envoy
(same listener and routes, no ext_proc: envoy_config `direct=True`) and one *gateway* Envoy (upstream-filter
ext_proc), all sharing one ext_proc process. With `workers` > 1, one more gateway Envoy in front of nginx
(`workers_nginx`) whose ext_proc is that many worker processes in replica mode (POOLER_EXTPROC_SHARED, own
sockets, Envoy balancing over them: what several workers per host are). They are not told how many they are
(POOLER_EXTPROC_WORKERS), so the stream cap is not split between them: the load is one session at c=16, which a
cap of 8 split in shares would refuse in part (docs/ARCHITECTURE.md "Selection"). Everything on 127.0.0.1, in a
temp dir, SQLite.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from bench.fixed_upstream import nginx_binary, nginx_conf
from pooler.config import Config, load_config
from pooler.envoy_config.http_filters import REQUEST_SCAN_FILTER, USAGE_FILTER
from pooler.supervisor import ChildSpec, Supervisor
from pooler.up import (
    envoy_binary,
    free_loopback_port,
    http_probe,
    module_available,
    python_module,
    tcp_probe,
    unix_probe,
)

BUDGET = 10**15  # tokens: no quota window ever fills during a benchmark


@dataclass
class Stack:
    workdir: Path
    config: Config
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    pool_key: str | None = None
    account_token: str = ""
    supervisor: Supervisor | None = None
    log: IO[str] | None = None
    workers: int = 0
    """ext_proc worker processes behind the `workers_nginx` Envoy (0: no such path)."""

    @property
    def has_gateway(self) -> bool:
        return module_available("extproc")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def pid(self, name: str) -> int | None:
        assert self.supervisor is not None
        return self.supervisor.child(name).pid

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop_all()
        if self.log is not None:
            self.log.close()


def worker_name(n: int) -> str:
    return f"extproc-w{n}"


def make_stack(workdir: Path, workers: int = 0) -> Stack:
    data = workdir / "data"
    env = {
        "POOLER_DATA_DIR": str(data),
        "DATABASE_URL": f"sqlite:///{data / 'pooler.db'}",
        "POOLER_KEYRING_FILE": str(data / "keyring.env"),
        "POOLER_SECRET_KEYS": "",
        "POOLER_KEY_PEPPER": "",
        "POOLER_LISTEN_PORT": str(free_loopback_port()),
        "POOLER_ADMIN_PORT": str(free_loopback_port()),
        "POOLER_ENVOY_ADMIN_PORT": str(free_loopback_port()),
        "POOLER_LOG_LEVEL": "WARNING",
    }
    stack = Stack(workdir=workdir, config=load_config(env), env=env, workers=workers)
    names = ("simulator", "nginx", "direct_sim", "direct_nginx", "plain_nginx", "gateway_sim", "gateway_nginx")
    for name in (*names, *NOHOLD):
        stack.ports[name] = free_loopback_port()
    if workers > 1:
        stack.ports["workers_nginx"] = free_loopback_port()
    return stack


def _worker_sockets(stack: Stack, n: int) -> tuple[Path, Path]:
    return stack.workdir / f"w{n}-x.sock", stack.workdir / f"w{n}-a.sock"


BODY_FILTERS = (REQUEST_SCAN_FILTER, USAGE_FILTER)


def _without_body_filters(node: Any) -> None:
    """The plain-proxy baseline: the body filters stay in the chain but disabled (routes name them in
    typed_per_filter_config, which an absent filter would fail), and no route turns them on, so Envoy neither
    buffers nor parses the body."""
    if isinstance(node, dict):
        if node.get("name") in BODY_FILTERS and "typed_config" in node:
            node["disabled"] = True
        per_route = node.get("typed_per_filter_config")
        if isinstance(per_route, dict):
            for name in BODY_FILTERS:
                if not per_route.get(name, {}).get("disabled"):
                    per_route.pop(name, None)
        for value in node.values():
            _without_body_filters(value)
    elif isinstance(node, list):
        for value in node:
            _without_body_filters(value)


NOHOLD = ("nohold_sim", "nohold_nginx")
"""The gateway without the first-event hold (envoy_config `first_event_hold=False`), same ext_proc."""


def _envoy(
    stack: Stack,
    name: str,
    upstream_url: str,
    direct: bool,
    plain: bool = False,
    workers: int = 0,
    hold: bool = True,
) -> ChildSpec:
    """`workers` > 0: the ext_proc is that many worker processes (their sockets), not the shared one. `hold`: False
    renders the gateway without the first-event hold (same ext_proc)."""
    from pooler.envoy_config import Endpoint, config_from_env, render

    admin_port = free_loopback_port()
    config = dataclasses.replace(stack.config, listen_port=stack.ports[name], envoy_admin_port=admin_port)
    gateway = dataclasses.replace(
        config_from_env(config, upstream_url=upstream_url),
        local=Endpoint.unix(stack.workdir / f"local-{name}.sock"),
        direct=direct,
        first_event_hold=hold,
    )
    if workers:
        sockets = [tuple(Endpoint.unix(p) for p in _worker_sockets(stack, n)) for n in range(workers)]
        gateway = dataclasses.replace(
            gateway, extproc=sockets[0][0], accesslog=sockets[0][1], replicas=tuple((x, a) for x, a in sockets[1:])
        )
    path = stack.workdir / f"envoy-{name}.yaml"
    text = render(gateway)
    if plain:
        doc = yaml.safe_load(text)
        _without_body_filters(doc)
        text = yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text)
    argv = [envoy_binary(), "-c", str(path), "--disable-hot-restart", "--log-level", "error"]
    ready = http_probe(f"http://127.0.0.1:{admin_port}/ready")
    return ChildSpec(name, argv, probe=lambda: ready() and tcp_probe(stack.ports[name])())


def seed(stack: Stack) -> None:
    """Keyring, migrations and the demo pool (3 simulator accounts) plus a Pool key, as `pooler up --demo` does."""
    from pooler.crypto.keyring import ensure_dev_keyring
    from pooler.demo import seed_demo
    from pooler.migrate import upgrade
    from pooler.simulator.authjson import make_auth_json
    from pooler.simulator.tokens import Identity, default_secret

    stack.config.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_dev_keyring(stack.config)
    upgrade(stack.config.database_url)
    stack.pool_key = seed_demo(stack.config, stack.url("simulator")).raw_key
    _uncap(stack)
    doc = make_auth_json(Identity("acct-1", "plus"), default_secret(), time.time())
    stack.account_token = doc["tokens"]["access_token"]


def _uncap(stack: Stack) -> None:
    """No per-account stream cap for the demo pool: wrk sends one session at c=16 as fast as it can, and the
    slots of ended requests stay counted until their access-log entry arrives, so the default cap of 8 refused
    about half of the gateway's requests under load (a 503 that costs nothing); the cap is measured by
    tests/integration/test_gateway_spread_soak.py, not here."""
    from sqlalchemy import select

    from pooler.context import open_context
    from pooler.demo import DEMO_POOL
    from pooler.models import Pool, PoolSettings

    ctx = open_context(stack.config)
    try:
        with ctx.session_factory.begin() as session:
            pool_id = session.scalars(select(Pool.id).where(Pool.name == DEMO_POOL)).one()
            settings = session.get(PoolSettings, pool_id)
            assert settings is not None
            settings.max_concurrency_per_account = None
    finally:
        ctx.dispose()


def start(stack: Stack, extproc_env: dict[str, str] | None = None) -> None:
    """`extproc_env`: extra environment for the ext_proc child only (memory probes: allocator settings,
    POOLER_EXTPROC_MEMDEBUG), so Envoy, nginx and the simulator run exactly as in every other run."""
    sim, ngx = stack.url("simulator"), stack.url("nginx")
    nginx_dir = stack.workdir / "nginx"
    nginx_dir.mkdir(parents=True, exist_ok=True)
    (nginx_dir / "nginx.conf").write_text(nginx_conf(nginx_dir, stack.ports["nginx"]))
    specs = [
        ChildSpec(
            "simulator",
            python_module("pooler", "simulator", "--port", str(stack.ports["simulator"]), "--accounts", "3"),
            probe=tcp_probe(stack.ports["simulator"]),
        ),
        ChildSpec(
            "nginx",
            [nginx_binary() or "nginx", "-c", str(nginx_dir / "nginx.conf"), "-p", str(nginx_dir)],
            probe=tcp_probe(stack.ports["nginx"]),
        ),
        _envoy(stack, "direct_sim", sim, direct=True),
        _envoy(stack, "direct_nginx", ngx, direct=True),
        # Baseline 2: a plain Envoy proxy (direct, the Lua request scanner and sse_to_metadata off) - what a proxy
        # without the gateway's body reads costs; the gateway needs the scanner for `model`/`prompt_cache_key`.
        _envoy(stack, "plain_nginx", ngx, direct=True, plain=True),
    ]
    if stack.has_gateway:
        specs.append(
            ChildSpec(
                "extproc",
                python_module("extproc"),
                env=extproc_env or {},
                probe=unix_probe(stack.config.extproc_socket),
            )
        )
        specs.append(_envoy(stack, "gateway_sim", sim, direct=False))
        specs.append(_envoy(stack, "gateway_nginx", ngx, direct=False))
        if stack.workers > 1:
            for n in range(stack.workers):
                extproc_socket, accesslog_socket = _worker_sockets(stack, n)
                worker_env = {
                    "POOLER_EXTPROC_SHARED": "1",
                    "POOLER_EXTPROC_SOCKET": str(extproc_socket),
                    "POOLER_ACCESSLOG_SOCKET": str(accesslog_socket),
                }
                specs.append(
                    ChildSpec(
                        worker_name(n), python_module("extproc"), env=worker_env, probe=unix_probe(extproc_socket)
                    )
                )
            specs.append(_envoy(stack, "workers_nginx", ngx, direct=False, workers=stack.workers))
        specs.append(_envoy(stack, "nohold_sim", sim, direct=False, hold=False))
        specs.append(_envoy(stack, "nohold_nginx", ngx, direct=False, hold=False))
    stack.log = open(stack.workdir / "processes.log", "a")  # noqa: SIM115 - closed in Stack.stop
    env = {**stack.env, "PYTHONUNBUFFERED": "1"}
    stack.supervisor = Supervisor(specs, out=stack.log, base_env={**os.environ, **env})
    stack.supervisor.start_all()
    if not stack.supervisor.wait_ready(90):
        waiting = [c.name for c in stack.supervisor.children if not c.ready]
        raise RuntimeError(f"not ready after 90 s: {waiting}; see {stack.workdir / 'processes.log'}")
    with httpx.Client(base_url=sim, timeout=10) as client:
        for account in ("acct-1", "acct-2", "acct-3"):
            client.post(
                "/_sim/accounts", json={"account_id": account, "primary_budget": BUDGET, "secondary_budget": BUDGET}
            ).raise_for_status()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _group(pid: int) -> Iterator[tuple[Path, list[str]]]:
    """(/proc entry, stat fields after the command) of each process of `pid`'s process group: the child leads its
    own, and a server may fork workers (nginx)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if len(stat) > 12 and stat[2].isdigit() and int(stat[2]) == pid:
            yield entry, stat


def rss_kib(pid: int | None) -> int:
    """Resident memory of a process and its descendants, in KiB."""
    if pid is None:
        return 0
    total = 0
    for entry, _ in _group(pid):
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system, every thread) a process and its descendants used so far."""
    if pid is None:
        return 0.0
    # Fields after the command: state is 0, so utime and stime (fields 14 and 15 of proc(5)) are 11 and 12.
    return sum(int(stat[11]) + int(stat[12]) for _, stat in _group(pid)) / CLOCK_TICKS


def eprint(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)
