"""`pooler up --demo` as an operator runs it: one command, a ready line, a working key, self-healing, clean stop.

SQLite on purpose (the default a fresh machine gets); a temp POOLER_DATA_DIR and free ports keep it private.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.integration

READY_RE = re.compile(r"^pooler ready: client (\S+)", re.M)
KEY_RE = re.compile(r"Pool key \(shown once[^)]*\): (cpk_\S+)")
PID_RE = re.compile(r"\[pooler\] (?:re)?started (\S+) \(pid (\d+)")
BODY = {
    "model": "gpt-5.1-codex",
    "stream": True,
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
}


@dataclass
class Up:
    process: ManagedProcess
    client_url: str
    key: str

    def log(self) -> str:
        return self.process.log_text()

    def pids(self, name: str | None = None) -> list[int]:
        return [int(pid) for child, pid in PID_RE.findall(self.log()) if name in (None, child)]


def respond(up: Up) -> httpx.Response:
    return httpx.post(
        f"{up.client_url}/backend-api/codex/responses",
        json=BODY,
        headers={"Authorization": f"Bearer {up.key}", "Accept": "text/event-stream"},
        timeout=15,
    )


def group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in process group `pgid`: children lead their own groups."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture
def pooler_up(tmp_path: Path) -> Iterator[Up]:
    if not os.path.exists(Path(__file__).resolve().parents[2] / "extproc" / "__main__.py"):
        pytest.skip("extproc has not landed (python -m extproc)")
    env = {
        "POOLER_DATA_DIR": str(tmp_path / "data"),
        "POOLER_LISTEN_PORT": str(free_port()),
        "POOLER_ADMIN_PORT": str(free_port()),
        "POOLER_ENVOY_ADMIN_PORT": str(free_port()),
        "POOLER_DEMO_SIMULATOR_PORT": str(free_port()),
    }
    for name in ("DATABASE_URL", "POOLER_SECRET_KEYS", "POOLER_KEY_PEPPER", "POOLER_KEYRING_FILE"):
        env[name] = ""  # SQLite and a fresh dev keyring in the temp dir, whatever the caller's environment says
    process = ManagedProcess("pooler-up", [str(VENV_BIN / "pooler"), "up", "--demo"], tmp_path / "up.log", env=env)
    process.start()
    try:
        wait_until(lambda: not process.alive() or READY_RE.search(process.log_text()), timeout=120, what="pooler ready")
        log = process.log_text()
        assert process.alive(), f"pooler up exited early:\n{log}"
        ready, key = READY_RE.search(log), KEY_RE.search(log)
        assert ready and key, log
        yield Up(process, ready.group(1), key.group(1))
    finally:
        process.stop(timeout=30)


def test_up_demo_serves_recovers_and_stops_cleanly(pooler_up: Up) -> None:
    up = pooler_up
    assert "development keyring" in up.log()

    first = respond(up)
    assert first.status_code == 200, first.text
    assert "response.completed" in first.text

    # Kill the ext_proc: the supervisor reports it, restarts it, and traffic recovers.
    (extproc_pid,) = up.pids("extproc")
    os.kill(extproc_pid, signal.SIGKILL)
    wait_until(lambda: "extproc is ready again after restart" in up.log(), timeout=60, what="extproc restart")
    assert re.search(r"extproc exited with code -9", up.log())
    wait_until(lambda: respond(up).status_code == 200, timeout=30, what="traffic after the ext_proc restart")

    # SIGTERM the supervisor only (its children lead their own process groups): all of them must go.
    children = up.pids()
    assert up.process.proc is not None
    up.process.proc.send_signal(signal.SIGTERM)
    up.process.proc.wait(30)
    assert up.process.proc.returncode == 0, up.log()
    assert "all processes stopped" in up.log()
    survivors = [pid for pid in children if group_alive(pid)]
    assert not survivors, f"children still running: {survivors}"
