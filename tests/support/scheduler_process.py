"""Starting `python -m scheduler` processes in tests, and reading their job runs."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.support.processes import VENV_BIN, ManagedProcess, wait_until

READY = "pooler-scheduler ready"
LEADER = "pooler-scheduler leader"
STANDBY = "pooler-scheduler standby"
FAST_INTERVALS = "refresh_due_tokens=1,poll_usage=1,housekeeping=2"


def keyring_env() -> dict[str, str]:
    key = base64.b64encode(os.urandom(32)).decode()
    return {"POOLER_SECRET_KEYS": f"k1:{key}", "POOLER_KEY_PEPPER": base64.b64encode(os.urandom(32)).decode()}


def start_scheduler(name: str, database_url: str, log_dir: Path, env: dict[str, str]) -> ManagedProcess:
    proc = ManagedProcess(
        name,
        [str(VENV_BIN / "python"), "-m", "scheduler"],
        log_dir / f"{name}.log",
        env={
            "DATABASE_URL": database_url,
            "POOLER_DATA_DIR": str(log_dir / "data"),
            "POOLER_SCHEDULER_INTERVALS": FAST_INTERVALS,
            **env,
        },
    ).start()
    wait_until(lambda: not proc.alive() or READY in proc.log_text(), timeout=60, what=f"{name} ready")
    if not proc.alive():
        raise RuntimeError(f"{name} exited early:\n{proc.log_text()}")
    return proc


def runner_of(proc: ManagedProcess) -> str:
    """`host:pid` as the process writes it into job_runs.runner."""
    assert proc.proc is not None
    for line in proc.log_text().splitlines():
        if line.startswith(READY):
            return line.split()[-1]
    raise AssertionError(f"{proc.name} printed no ready line")


def leads(proc: ManagedProcess) -> bool:
    lines = [
        ln
        for ln in proc.log_text().splitlines()
        if ln.startswith(("pooler-scheduler leader", "pooler-scheduler standby"))
    ]
    return bool(lines) and lines[-1].startswith(LEADER)


def runs_by(engine: Engine, runner: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM job_runs WHERE runner = :r"), {"r": runner}).scalar_one())


def duplicate_slots(engine: Engine) -> list[tuple[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT job_id, slot FROM job_runs GROUP BY job_id, slot HAVING count(*) > 1")).all()
    return [(r[0], r[1]) for r in rows]
