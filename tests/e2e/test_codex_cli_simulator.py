"""The real Codex CLI (npm @openai/codex, pinned by `make codex-cli`) against the simulator, over HTTP SSE and
over the websocket transport."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.codex_cli import MODEL, run_codex_exec, write_codex_config
from tests.support.simulator import RunningSimulator

pytestmark = pytest.mark.e2e
ANSWER = "Simulated answer 7319 from {model}."
TOKEN_ENV = "POOLER_SIM_ACCESS_TOKEN"


def run_codex(sim: RunningSimulator, tmp_path: Path, websockets: bool, token: str) -> subprocess.CompletedProcess[str]:
    home = write_codex_config(
        tmp_path / "codex-home",
        provider="simulator",
        provider_name="Codex simulator",
        base_url=sim.codex_base_url,
        env_key=TOKEN_ENV,
        websockets=websockets,
    )
    return run_codex_exec(tmp_path, home, TOKEN_ENV, token, timeout=90)


def completed_turns(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [e for e in sim.client.journal(route="responses") if e.get("usage") and e["usage"]["output_tokens"]]


@pytest.mark.parametrize("websockets", [False, True], ids=["http-sse", "websocket"])
def test_codex_exec_against_the_simulator(shared_simulator: RunningSimulator, tmp_path: Path, websockets: bool) -> None:
    sim = shared_simulator
    sim.client.configure(text=ANSWER)
    token = sim.client.access_token("acct-1")
    result = run_codex(sim, tmp_path, websockets, token)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert ANSWER.format(model=MODEL) in result.stdout

    entries = sim.client.journal(route="responses")
    (turn,) = completed_turns(sim)
    assert turn["model"] == MODEL and turn["account"] == "acct-1"
    # Codex reports tokens as total minus cached input (over websockets the warm-up fills the prompt cache).
    usage = turn["usage"]
    shown = usage["total_tokens"] - usage["input_tokens_details"]["cached_tokens"]
    assert shown > 0 and f"tokens used\n{shown:,}\n" in output
    if websockets:
        assert usage["input_tokens_details"]["cached_tokens"] > 0
    assert {e["authorization"] for e in entries} == {f"Bearer {token}"}
    if websockets:
        upgrades = [e for e in entries if e["transport"] == "websocket" and e["method"] == "GET"]
        assert upgrades and upgrades[0]["status"] == 101 and upgrades[0]["headers"]["upgrade"] == "websocket"
        assert upgrades[0]["headers"]["openai-beta"].startswith("responses_websockets=")
        assert not any(e["method"] == "POST" for e in entries)
    else:
        assert [e["method"] for e in entries] == ["POST"]
        assert entries[0]["headers"]["originator"] == "codex_exec"
