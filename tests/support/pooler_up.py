"""`pooler up --demo` as a test harness: the whole product (Envoy, ext_proc, admin, scheduler, simulator) on free
ports in a temp data dir, SQLite by default. Used by the `pooler up` integration test and the Codex CLI e2e."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until

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
    db_url = database_url or f"sqlite:///{data_dir / 'pooler.db'}"
    env = {
        "POOLER_DATA_DIR": str(data_dir),
        "DATABASE_URL": db_url,
        "POOLER_LISTEN_PORT": str(free_port()),
        "POOLER_ADMIN_PORT": str(free_port()),
        "POOLER_ENVOY_ADMIN_PORT": str(free_port()),
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
        yield PoolerUp(process, ready.group(1), key.group(1), f"http://127.0.0.1:{sim_port}", db_url, data_dir)
    finally:
        process.stop(timeout=30)
