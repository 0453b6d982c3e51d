"""`pooler up --demo` as a test harness: the whole product (Envoy, ext_proc, admin, scheduler, simulator) on free
ports in a temp data dir, SQLite by default. Used by the `pooler up` integration tests and the Codex CLI e2e; the
restart tests add steady streaming load (`Load`) and count request-log rows."""

from __future__ import annotations

import datetime as dt
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from pooler.audit import SYSTEM
from pooler.demo import DEMO_ACCOUNTS, DEMO_POOL
from pooler.migrate import upgrade
from pooler.models import RequestLog
from pooler.services.pools import update_pool_settings
from pooler.settings import SettingValue, set_setting
from pooler.simulator.client import SimulatorClient
from tests.support.databases import psycopg_url, throwaway_postgres_database
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until

LOAD_CONCURRENCY = 8

READY_RE = re.compile(r"^pooler ready: client (\S+)", re.M)
KEY_RE = re.compile(r"Pool key \(shown once[^)]*\): (cpk_\S+)")
PID_RE = re.compile(r"\[pooler\] (?:re)?started (\S+) \(pid (\d+)")
SMALL_BODY = {
    "model": "gpt-5.1-codex",
    "stream": True,
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
}


@dataclass
class PoolerUp:
    process: ManagedProcess
    client_url: str
    key: str
    simulator_url: str
    database_url: str
    data_dir: Path
    envoy_admin_port: int

    @property
    def codex_base_url(self) -> str:
        return f"{self.client_url}/backend-api/codex"

    def log(self) -> str:
        return self.process.log_text()

    def pids(self, name: str | None = None) -> list[int]:
        return [int(pid) for child, pid in PID_RE.findall(self.log()) if name in (None, child)]

    def respond(self, body: dict[str, object] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.codex_base_url}/responses",
            json=body or SMALL_BODY,
            headers={"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"},
            timeout=15,
        )


@contextmanager
def pooler_up_demo(tmp_path: Path, database_url: str | None = None) -> Iterator[PoolerUp]:
    data_dir = tmp_path / "data"
    sim_port = free_port()
    envoy_admin_port = free_port()
    db_url = database_url or f"sqlite:///{data_dir / 'pooler.db'}"
    env = {
        "POOLER_DATA_DIR": str(data_dir),
        "DATABASE_URL": db_url,
        "POOLER_LISTEN_PORT": str(free_port()),
        "POOLER_ADMIN_PORT": str(free_port()),
        "POOLER_ENVOY_ADMIN_PORT": str(envoy_admin_port),
        "POOLER_MCP_PORT": str(free_port()),
        "POOLER_DEMO_SIMULATOR_PORT": str(sim_port),
        # A fresh dev keyring in the temp dir, whatever the caller's environment says.
        "POOLER_SECRET_KEYS": "",
        "POOLER_KEY_PEPPER": "",
        "POOLER_KEYRING_FILE": str(data_dir / "keyring.env"),
    }
    process = ManagedProcess("pooler-up", [str(VENV_BIN / "pooler"), "up", "--demo"], tmp_path / "up.log", env=env)
    process.start()
    try:
        wait_until(lambda: not process.alive() or READY_RE.search(process.log_text()), timeout=120, what="pooler ready")
        log = process.log_text()
        assert process.alive(), f"pooler up exited early:\n{log}"
        ready, key = READY_RE.search(log), KEY_RE.search(log)
        assert ready and key, log
        simulator_url = f"http://127.0.0.1:{sim_port}"
        yield PoolerUp(process, ready.group(1), key.group(1), simulator_url, db_url, data_dir, envoy_admin_port)
    finally:
        process.stop(timeout=30)


def change_settings(database_url: str, **values: SettingValue) -> None:
    engine = create_engine(psycopg_url(database_url))
    try:
        with Session(engine) as session, session.begin():
            for name, value in values.items():
                set_setting(session, name, value, actor=SYSTEM)
    finally:
        engine.dispose()


@contextmanager
def pooler_up_with_workers(tmp_path: Path, workers: int, **settings: SettingValue) -> Iterator[PoolerUp]:
    """`pooler up --demo` on a PostgreSQL database of its own (the demo seed rewrites the upstream URL setting,
    which other modules' gateways read), with `workers` decision workers and `settings`."""
    with throwaway_postgres_database("pooler_workers") as url:
        upgrade(url)
        # A fixed count whatever the machine's core count (the default is one per core).
        change_settings(url, extproc_workers=workers, **settings)
        with pooler_up_demo(tmp_path, database_url=url) as running:
            # Thousands of turns: no simulated quota window may fill meanwhile (a 429 is not what is tested).
            simulator = SimulatorClient(running.simulator_url)
            for account in DEMO_ACCOUNTS:
                simulator.upsert_account(account, primary_budget=10**15, secondary_budget=10**15)
            # Streaming turns that take a while, as Codex's do (the simulator answers at once otherwise: a flood of
            # ~300 turns/s, where a receiver's drain races Envoy's 64 KiB buffer flushes, docs/OPERATIONS.md).
            simulator.add_fault("delay", seconds=0.2, count=None)
            yield running


class Load:
    """LOAD_CONCURRENCY clients streaming /responses back to back until stopped; every outcome kept."""

    def __init__(self, up: PoolerUp) -> None:
        self.up = up
        self.completed = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(LOAD_CONCURRENCY)]

    def _client(self) -> None:
        headers = {"Authorization": f"Bearer {self.up.key}", "Accept": "text/event-stream"}
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    with client.stream(
                        "POST", f"{self.up.codex_base_url}/responses", json=SMALL_BODY, headers=headers
                    ) as resp:
                        body = "".join(resp.iter_text())
                    ok = resp.status_code == 200 and "response.completed" in body
                    outcome = None if ok else f"{resp.status_code} {body[:200]}"
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if outcome is None:
                        self.completed += 1
                    else:
                        self.failures.append(outcome)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_more(self, count: int, what: str) -> None:
        target = self.completed + count
        wait_until(lambda: self.completed >= target or self.failures, timeout=60, what=what)
        assert not self.failures, self.failures[:5]


def latest_pid(up: PoolerUp, name: str) -> int:
    return up.pids(name)[-1]  # the latest start of that child


def request_rows(up: PoolerUp, since: dt.datetime) -> int:
    """Request-log rows of the requests started since `since` (the load's: nothing else runs meanwhile)."""
    engine = create_engine(psycopg_url(up.database_url))
    query = select(func.count()).select_from(RequestLog)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(query.where(RequestLog.route_family == "responses", RequestLog.created_at >= since)) or 0
            )
    finally:
        engine.dispose()


def envoy_epoch(up: PoolerUp) -> int:
    """The hot-restart epoch of the Envoy that answers on the admin port (the newest)."""
    info = httpx.get(f"http://127.0.0.1:{up.envoy_admin_port}/server_info", timeout=5).json()
    return int(info["command_line_options"]["restart_epoch"])


def wait_for_envoy_epoch(up: PoolerUp, epoch: int, what: str) -> None:
    """Until Envoy runs at `epoch` and `pooler up` has taken it as its Envoy."""

    def taken() -> bool:
        _, started, after = up.log().partition(f"hot-restarting Envoy (epoch {epoch})")
        return bool(started) and "[pooler] envoy now runs as pid" in after

    wait_until(taken, timeout=90, what=what)
    assert envoy_epoch(up) == epoch


def rolling_restart(up: PoolerUp, load: Load) -> None:
    """SIGHUP to `pooler up`: every ext_proc process replaced in turn, then Envoy hot-restarted; traffic flowing
    after it."""
    assert up.process.proc is not None
    epoch = envoy_epoch(up)
    up.process.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "rolling restart done" in up.log(), timeout=90, what="rolling restart")
    wait_for_envoy_epoch(up, epoch + 1, "Envoy hot-restarted after the SIGHUP")
    load.wait_more(25, "traffic after the rolling restart")


def assert_every_completed_request_logged(up: PoolerUp, load: Load, since: dt.datetime) -> None:
    assert not load.failures, load.failures[:5]
    wait_until(lambda: request_rows(up, since) >= load.completed, timeout=20, what="request-log rows")
    assert request_rows(up, since) == load.completed


def change_demo_pool(up: PoolerUp, **changes: Any) -> None:
    """update_pool_settings on the demo pool, as the admin would."""
    engine = create_engine(psycopg_url(up.database_url))
    try:
        with Session(engine) as session, session.begin():
            update_pool_settings(session, DEMO_POOL, actor=SYSTEM, **changes)
    finally:
        engine.dispose()


def without_stream_cap(up: PoolerUp) -> None:
    change_demo_pool(up, max_concurrency_per_account=None)
    # The settings change bumps the routing version: wait until the worker serves with it.
    wait_until(lambda: up.respond().status_code == 200, timeout=30, what="traffic after the pool change")
