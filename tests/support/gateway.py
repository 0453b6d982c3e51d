"""A real data plane for tests: simulator + `python -m extproc` + `envoy`, on free ports, against a given DB.

Usage::

    with running_gateway(postgres_url, log_dir) as gw:
        seeded = gw.seed_pool("team-a", accounts=["acct-a1", "acct-a2"])    # pool + accounts + a Pool key
        r = httpx.post(gw.codex_base + "/responses", json=turn_body(), headers=auth(seeded.key))
        gw.simulator.client.journal()   # what the upstream saw
        gw.wait_for_logs(1)             # request_logs rows written by the access-log writer

Each gateway gets its own keyring (fresh secret keys + pepper), socket dir and data dir; the database is shared
by whoever passes the same URL (tests isolate themselves with their own pools/accounts). `gw.kill_extproc()` /
`gw.start_extproc()` exercise faults. Logs of every process are printed when the block raises.

`extproc_tcp=True` connects Envoy to the ext_proc over TCP (POOLER_EXTPROC_LISTEN, /metrics on
POOLER_METRICS_LISTEN), as in a deployment where they share no filesystem; `extproc_tls=True` adds mTLS with a
throwaway PKI (`gw.pki`). The ext_proc still serves its unix sockets, but Envoy's config names only TCP.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from pooler.audit import SYSTEM
from pooler.config import load_config
from pooler.context import CoreContext, open_context
from pooler.envoy_config import Endpoint, ExtprocTls, GatewayConfig, metrics_socket_for, render
from pooler.models import PoolAssignment, PoolSettings, RequestLog
from pooler.services import accounts, keys, pools
from pooler.versions import bump_routing_version
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, port_open, wait_until
from tests.support.simulator import RunningSimulator, running_simulator
from tests.support.tls import Pki, make_pki

EXTPROC_READY = "pooler extproc ready"
SHIFTED_CLOCK = "tests.support.shifted_clock"


@dataclass
class SeededPool:
    name: str
    pool_id: int
    key: str = field(repr=False)
    """The raw Pool key (a canary for leak scans: it must never appear in logs or rows)."""
    key_prefix: str
    accounts: dict[str, int]
    """Simulator account id (= chatgpt account id) -> our account id."""
    tokens: dict[str, str] = field(repr=False, default_factory=dict)
    """Simulator account id -> its access token (canaries too)."""


@dataclass
class Gateway:
    url: str
    db_url: str
    env: dict[str, str]
    log_dir: Path
    sock_dir: Path
    simulator: RunningSimulator
    envoy: ManagedProcess
    extproc: ManagedProcess
    envoy_admin_port: int
    access_log_path: Path
    ctx: CoreContext
    admin_app_port: int = 0
    """Where Envoy's `/admin` route sends requests (the admin is not started here: tests start it on this port,
    e.g. the browser test, so it is reached through Envoy like in production)."""
    replica_envs: list[dict[str, str]] = field(default_factory=list)
    """Environments of further ext_proc replicas (own sockets, same DB and keyring); see running_gateway."""
    replicas: dict[int, ManagedProcess] = field(default_factory=dict)
    config: GatewayConfig | None = None
    """What Envoy was rendered from: a test can render a second Envoy over the same ext_procs (with
    dataclasses.replace: own listener, admin, local socket) and start it with `start_envoy`."""
    pki: Pki | None = None
    """With `extproc_tls`: the CA, the ext_proc's server certificate and Envoy's client certificate."""
    clock_file: Path | None = None
    """With `shifted_clock`: the file holding the seconds the ext_proc's wall clock is moved by."""

    @property
    def extproc_tcp_port(self) -> int | None:
        """The ext_proc's POOLER_EXTPROC_LISTEN port (None: unix sockets only)."""
        listen = self.env.get("POOLER_EXTPROC_LISTEN")
        return int(listen.rpartition(":")[2]) if listen else None

    @property
    def admin_url(self) -> str:
        """The admin through Envoy: the gateway's own port, path /admin."""
        return f"{self.url}/admin"

    @property
    def codex_base(self) -> str:
        return f"{self.url}/backend-api/codex"

    @property
    def ws_url(self) -> str:
        return self.codex_base.replace("http://", "ws://") + "/responses"

    # --- processes -----------------------------------------------------------------------------------------
    def start_extproc(self, timeout: float = 60.0) -> None:
        log_path = self.log_dir / "extproc.log"
        before = log_path.read_text(errors="replace").count(EXTPROC_READY) if log_path.exists() else 0
        command = ["-m", "extproc"] if self.clock_file is None else ["-m", SHIFTED_CLOCK, str(self.clock_file)]
        self.extproc = ManagedProcess("extproc", [str(VENV_BIN / "python"), *command], log_path, env=self.env).start()

        def ready() -> bool:
            if not self.extproc.alive():
                raise RuntimeError("extproc exited:\n" + self.extproc.log_text()[-3000:])
            return self.extproc.log_text().count(EXTPROC_READY) > before and self._ready_url_ok()

        wait_until(ready, timeout=timeout, what="extproc ready")

    def start_replica(self, n: int, timeout: float = 60.0) -> None:
        """Starts replica n (1-based: the ext_proc of `start_extproc` is replica 0) and waits for its ready line."""
        log_path = self.log_dir / f"extproc-{n}.log"
        before = log_path.read_text(errors="replace").count(EXTPROC_READY) if log_path.exists() else 0
        proc = ManagedProcess(
            f"extproc-{n}", [str(VENV_BIN / "python"), "-m", "extproc"], log_path, env=self.replica_envs[n - 1]
        ).start()
        self.replicas[n] = proc

        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"extproc-{n} exited:\n" + proc.log_text()[-3000:])
            return proc.log_text().count(EXTPROC_READY) > before

        wait_until(ready, timeout=timeout, what=f"extproc-{n} ready")

    def wait_replicas_healthy(self, count: int, timeout: float = 60.0) -> None:
        """Until Envoy's health checks put `count` ext_proc endpoints in rotation (admin /clusters)."""

        def healthy() -> bool:
            text = httpx.get(f"http://127.0.0.1:{self.envoy_admin_port}/clusters", timeout=5).text
            lines = [x for x in text.splitlines() if x.startswith("pooler_extproc::") and "::health_flags::" in x]
            return sum(x.endswith("::healthy") for x in lines) >= count

        wait_until(healthy, timeout=timeout, what=f"{count} healthy ext_proc endpoints")

    def metrics_text(self, n: int = 0) -> str:
        """Replica n's own /metrics (its unix socket), not whichever replica Envoy's /metrics route picks."""
        env = self.env if n == 0 else self.replica_envs[n - 1]
        transport = httpx.HTTPTransport(uds=metrics_socket_for(Path(env["POOLER_EXTPROC_SOCKET"]).resolve()))
        with httpx.Client(transport=transport, timeout=10) as client:
            return client.get("http://replica/metrics").text

    def _ready_url_ok(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def shift_clock(self, seconds: float) -> None:
        """Moves the ext_proc's wall clock to `seconds` ahead of real time (needs `shifted_clock=True`)."""
        assert self.clock_file is not None, "running_gateway(shifted_clock=True)"
        self.clock_file.write_text(repr(float(seconds)))

    def kill_extproc(self) -> None:
        self.extproc.kill()

    def process_logs(self) -> dict[str, str]:
        logs = {
            p.name: p.log_text() for p in (self.envoy, self.extproc, self.simulator.process, *self.replicas.values())
        }
        logs["access_log"] = self.access_log_path.read_text() if self.access_log_path.exists() else ""
        return logs

    # --- data ------------------------------------------------------------------------------------------------
    def seed_pool(
        self,
        name: str,
        accounts_: list[str],
        plan: str = "plus",
        key_fields: dict[str, Any] | None = None,
        **settings: Any,
    ) -> SeededPool:
        """A pool with the given simulator accounts (created in the simulator if new) and one Pool key.
        `settings` are PoolSettings columns (strategy, max_attempts, sticky_ttl_seconds, ...)."""
        docs = {acct: self.simulator.client.make_auth(acct, plan=plan) for acct in accounts_}
        with self.ctx.session_factory.begin() as session:
            pool = pools.create_pool(session, name=name, actor=SYSTEM)
            ids: dict[str, int] = {}
            for acct, doc in docs.items():
                result = accounts.import_auth_json(
                    session, self.ctx.box, pool=pool, data=json.dumps(doc).encode(), actor=SYSTEM, label=acct
                )
                ids[acct] = result.account_id
            row = session.get(PoolSettings, pool.id)
            assert row is not None
            for column, value in settings.items():
                setattr(row, column, value)
            created = keys.create_key(
                session, self.ctx.hasher, pool=pool, label=f"{name} key", actor=SYSTEM, **(key_fields or {})
            )
            bump_routing_version(session)
            pool_id, raw, prefix = pool.id, created.raw, created.key.prefix
        tokens = {acct: str(doc["tokens"]["access_token"]) for acct, doc in docs.items()}
        seeded = SeededPool(name, pool_id, raw, prefix, ids, tokens)
        self.wait_for_key(seeded)
        return seeded

    def wait_for_key(self, seeded: SeededPool, timeout: float = 30.0) -> None:
        """Until the ext_proc's snapshot knows the key (usage answers 200 for it)."""

        def known() -> bool:
            r = httpx.get(
                f"{self.url}/backend-api/wham/usage", headers={"Authorization": f"Bearer {seeded.key}"}, timeout=5
            )
            return r.status_code == 200

        wait_until(known, timeout=timeout, what="snapshot with the new key")
        if not self.replicas or not seeded.accounts:
            return

        # The answer above came from whichever replica Envoy picked; each replica reloads on its own, so a
        # request right after could meet one that has not yet. Every replica lists the pool's accounts once it
        # holds the snapshot with the key (one transaction wrote both).
        def every_replica_reloaded() -> bool:
            labels = [f'account="{label}"' for label in seeded.accounts]
            texts = [self.metrics_text(n) for n in (0, *self.replicas)]
            return all(label in text for text in texts for label in labels)

        wait_until(every_replica_reloaded, timeout=timeout, what="every replica's snapshot with the new key")

    def update(self, change: Callable[[Any], None]) -> None:
        """Run `change(session)` in a transaction and bump the routing version (the gateway reloads)."""
        with self.ctx.session_factory.begin() as session:
            change(session)
            bump_routing_version(session)

    def prefer(self, seeded: SeededPool, first: str) -> None:
        """Priority 1 for the account `first` of the pool, 2 for the others (the `primary-first` strategy)."""

        def change(session: Any) -> None:
            for row in session.scalars(select(PoolAssignment).where(PoolAssignment.pool_id == seeded.pool_id)):
                row.priority = 1 if row.account_id == seeded.accounts[first] else 2

        self.update(change)

    def request_logs(self, **where: Any) -> list[RequestLog]:
        with self.ctx.session_factory() as session:
            # By when each request started: rows are inserted as Envoy's workers flush their access logs (each on
            # its own timer), so insertion order can put a later request first.
            query = select(RequestLog).order_by(RequestLog.created_at, RequestLog.id)
            for column, value in where.items():
                query = query.where(getattr(RequestLog, column) == value)
            rows = list(session.scalars(query))
            for row in rows:
                _ = row.attempts  # load while the session is open
            return rows

    def wait_for_logs(self, count: int, timeout: float = 30.0, **where: Any) -> list[RequestLog]:
        def enough() -> list[RequestLog] | None:
            rows = self.request_logs(**where)
            return rows if len(rows) >= count else None

        return wait_until(enough, timeout=timeout, what=f"{count} request log rows {where}")  # type: ignore[return-value]

    def count_logs(self) -> int:
        with self.ctx.session_factory() as session:
            return int(session.scalar(select(func.count()).select_from(RequestLog)) or 0)


def test_environment(db_url: str, data_dir: Path, sock_dir: Path) -> dict[str, str]:
    def key() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    return {
        "DATABASE_URL": db_url,
        "POOLER_DATA_DIR": str(data_dir),
        "POOLER_SECRET_KEYS": f"t1:{key()}",
        "POOLER_KEY_PEPPER": key(),
        "POOLER_EXTPROC_SOCKET": str(sock_dir / "x.sock"),
        "POOLER_ACCESSLOG_SOCKET": str(sock_dir / "a.sock"),
        "POOLER_LOG_LEVEL": os.environ.get("POOLER_TEST_LOG_LEVEL", "INFO"),
        "PYTHONUNBUFFERED": "1",
    }


def _tcp_environment(env: dict[str, str], pki: Pki | None) -> dict[str, str]:
    """`env` plus a TCP ext_proc and metrics address on free loopback ports, and the server side of mTLS."""
    tcp = {
        **env,
        "POOLER_EXTPROC_LISTEN": f"127.0.0.1:{free_port()}",
        "POOLER_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    if pki is not None:
        tcp.update(
            POOLER_EXTPROC_TLS_CERT=str(pki.server_cert),
            POOLER_EXTPROC_TLS_KEY=str(pki.server_key),
            POOLER_EXTPROC_TLS_CLIENT_CA=str(pki.ca_cert),
        )
    return tcp


def _endpoints(env: dict[str, str], host: str) -> tuple[Endpoint, Endpoint]:
    """Where Envoy reaches the ext_proc of `env`: its TCP port on `host` if it listens on TCP, else its sockets."""
    if "POOLER_EXTPROC_LISTEN" in env:
        tcp = Endpoint.tcp(host, Endpoint.parse(env["POOLER_EXTPROC_LISTEN"]).port or 0)
        return tcp, tcp
    return Endpoint.unix(env["POOLER_EXTPROC_SOCKET"]), Endpoint.unix(env["POOLER_ACCESSLOG_SOCKET"])


def start_envoy(config: GatewayConfig, log_dir: Path, name: str = "envoy") -> ManagedProcess:
    """Renders `config` to `<log_dir>/<name>.yaml` and starts Envoy on it (log `<name>.log`); the caller stops it.
    A random base id, so several Envoys (also of parallel tests) never share shared-memory regions."""
    envoy_yaml = log_dir / f"{name}.yaml"
    envoy_yaml.write_text(render(config))
    return ManagedProcess(
        name,
        [
            str(VENV_BIN / "envoy"),
            "-c",
            str(envoy_yaml),
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--base-id",
            str(secrets.randbelow(1_000_000)),
        ],
        log_dir / f"{name}.log",
    ).start()


@contextmanager
def running_gateway(
    db_url: str,
    log_dir: Path,
    simulator: RunningSimulator | None = None,
    simulator_accounts: int = 3,
    gateway_options: dict[str, Any] | None = None,
    extproc_replicas: int = 1,
    extproc_tcp: bool = False,
    extproc_tls: bool = False,
    extproc_host: str = "127.0.0.1",
    shifted_clock: bool = False,
    share_stream_cap: bool = False,
) -> Iterator[Gateway]:
    """Starts (or reuses `simulator`) + ext_proc + Envoy; yields a ready Gateway; stops everything after.
    `extproc_replicas` > 1: that many ext_proc processes in replica mode (POOLER_EXTPROC_SHARED) behind the one
    Envoy, whose clusters list them all with health checks (docs/OPERATIONS.md "Horizontal scaling").
    `extproc_tcp`: Envoy reaches every ext_proc over TCP (and /metrics too); `extproc_tls` (implies TCP): mTLS,
    the ext_proc requiring Envoy's client certificate (`gw.pki`); `extproc_host`: the name Envoy uses for those
    TCP addresses (e.g. "localhost": a DNS name, so STRICT_DNS clusters); `share_stream_cap`: replicas are told
    how many they are (POOLER_EXTPROC_WORKERS) and each enforces its share of the stream cap; `shifted_clock`:
    the ext_proc runs under tests/support/shifted_clock.py, its wall clock moved by `gw.shift_clock`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    sock_dir = Path(tempfile.mkdtemp(prefix="plr", dir="/tmp"))  # unix socket paths must stay short
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, sock_dir, True)
        sim = simulator or stack.enter_context(running_simulator(log_dir, accounts=simulator_accounts))
        env = test_environment(db_url, log_dir / "data", sock_dir)
        pki = make_pki(log_dir / "pki") if extproc_tls else None
        if extproc_tcp or extproc_tls:
            env = _tcp_environment(env, pki)
        replica_envs: list[dict[str, str]] = []
        if extproc_replicas > 1:
            env.update(POOLER_EXTPROC_SHARED="1", POOLER_EXTPROC_DRAIN_SECONDS="2.5")
            if share_stream_cap:
                env["POOLER_EXTPROC_WORKERS"] = str(extproc_replicas)
            replica_envs = [
                {
                    **env,
                    "POOLER_EXTPROC_SOCKET": str(sock_dir / f"x{n}.sock"),
                    "POOLER_ACCESSLOG_SOCKET": str(sock_dir / f"a{n}.sock"),
                }
                for n in range(1, extproc_replicas)
            ]
            if "POOLER_EXTPROC_LISTEN" in env:
                replica_envs = [_tcp_environment(e, pki) for e in replica_envs]
        ctx = open_context(load_config(env), hide_parameters=True)
        stack.callback(ctx.dispose)
        with ctx.session_factory.begin() as session:
            from pooler.settings import set_setting

            set_setting(session, "upstream_base_url", sim.base_url, actor=SYSTEM)
        port, admin_port, admin_app_port = free_port(), free_port(), free_port()
        access_log = log_dir / "envoy-access.log"
        extproc, accesslog = _endpoints(env, extproc_host)
        tcp_options: dict[str, Any] = {}
        if "POOLER_METRICS_LISTEN" in env:
            tcp_options["metrics"] = Endpoint.tcp(extproc_host, Endpoint.parse(env["POOLER_METRICS_LISTEN"]).port or 0)
        if pki is not None:
            # SNI = the certificate's DNS name: Envoy checks the ext_proc's certificate names it.
            tcp_options["extproc_tls"] = ExtprocTls(
                str(pki.ca_cert), str(pki.client_cert), str(pki.client_key), sni=pki.server_name
            )
        config = GatewayConfig(
            listen=Endpoint.tcp("127.0.0.1", port),
            admin=Endpoint.tcp("127.0.0.1", admin_port),
            extproc=extproc,
            accesslog=accesslog,
            local=Endpoint.unix(sock_dir / "l.sock"),
            admin_app=Endpoint.tcp("127.0.0.1", admin_app_port),
            upstream_url=sim.base_url,
            access_log_path=str(access_log),
            accesslog_flush_seconds=0.2,
            replicas=tuple(_endpoints(e, extproc_host) for e in replica_envs),
            **{**tcp_options, **(gateway_options or {})},  # e.g. client_allowlist / trusted_proxies (ingress tests)
        )
        envoy = start_envoy(config, log_dir)
        stack.callback(envoy.stop)
        gw = Gateway(
            url=f"http://127.0.0.1:{port}",
            db_url=db_url,
            env=env,
            log_dir=log_dir,
            sock_dir=sock_dir,
            simulator=sim,
            envoy=envoy,
            extproc=ManagedProcess("extproc", [], log_dir / "extproc.log"),
            envoy_admin_port=admin_port,
            access_log_path=access_log,
            ctx=ctx,
            admin_app_port=admin_app_port,
            replica_envs=replica_envs,
            config=config,
            pki=pki,
            clock_file=sock_dir / "clock" if shifted_clock else None,
        )
        stack.callback(lambda: gw.extproc.stop())
        # Every replica running at the end, including those a test restarted (registering them here, before they
        # were started, registered none: each replica-mode module left its replicas running after the tests).
        stack.callback(_stop_replicas, gw)
        try:
            wait_until(lambda: port_open(port) or not envoy.alive(), timeout=60, what="envoy listener")
            if not envoy.alive():
                raise RuntimeError("envoy exited:\n" + envoy.log_text()[-3000:])
            for n in range(1, extproc_replicas):
                gw.start_replica(n)
            gw.start_extproc()
            if extproc_replicas > 1:
                gw.wait_replicas_healthy(extproc_replicas)
            yield gw
        except BaseException:
            for name, text in gw.process_logs().items():
                print(f"----- {name} (last 4000 chars) -----\n{text[-4000:]}")
            raise


def _stop_replicas(gw: Gateway) -> None:
    for replica in list(gw.replicas.values()):
        replica.stop()


__all__ = ["Gateway", "SeededPool", "running_gateway", "start_envoy"]
