"""The real Codex CLI when its session must move accounts: the next turn replays encrypted reasoning sealed to
the old account, the new account refuses it, and the CLI gets the upstream's code unchanged (it does not repair
the history itself: a turn that kept its account would have been served)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.codex_cli import CODEX_BIN, write_codex_config
from tests.support.gateway import Gateway, running_gateway

pytestmark = pytest.mark.e2e
KEY_ENV = "POOLER_API_KEY"


@pytest.fixture(scope="module")
def gw(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(sqlite_url, tmp_path_factory.mktemp("gateway-codex-move")) as gateway:
        yield gateway


def _codex(home: Path, workdir: Path, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home.parent), "CODEX_HOME": str(home), KEY_ENV: key}
    return subprocess.run(
        [str(CODEX_BIN), "exec", *args],
        cwd=workdir,
        env={**env, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_codex_cli_gets_invalid_encrypted_content_after_a_forced_move(gw: Gateway, tmp_path: Path) -> None:
    if not CODEX_BIN.exists():
        pytest.fail(f"Codex CLI not installed at {CODEX_BIN}: run `make codex-cli` first")
    seeded = gw.seed_pool("codex-move", ["acct-cm1", "acct-cm2"])
    sim = gw.simulator.client
    sim.configure(reasoning_tokens=3, text="First answer.")
    home = write_codex_config(
        tmp_path / "codex-home",
        provider="pooler",
        provider_name="Pooler",
        base_url=gw.codex_base,
        env_key=KEY_ENV,
        websockets=False,
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    common = ("--skip-git-repo-check", "-s", "read-only")
    first = _codex(home, workdir, seeded.key, *common, "say hello")
    assert first.returncode == 0, first.stdout + first.stderr
    turns = [e for e in sim.journal(route="responses") if e["status"] == 200]
    (home_account,) = {e["account"] for e in turns}
    session = turns[-1]["headers"]["session-id"]

    # The session's account is spent: the resumed turn goes to the other account with the old reasoning.
    sim.upsert_account(home_account, primary_used_percent=100)
    since = max(e["seq"] for e in sim.journal())
    resumed = _codex(home, workdir, seeded.key, *common, "resume", "--last", "and again")
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode != 0, output
    assert "invalid_encrypted_content" in output
    entries = [e for e in sim.journal(since=since) if e["route"] == "responses"]
    assert entries and all(e["headers"]["session-id"] == session for e in entries)
    assert entries[0]["account"] == home_account and entries[0]["status"] == 429
    assert entries[-1]["account"] != home_account and entries[-1]["status"] == 400
    sim.upsert_account(home_account, primary_used_percent=0)
