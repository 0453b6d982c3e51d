"""Starting the Codex upstream simulator (`pooler simulator`) as a subprocess for a test."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pooler.simulator.client import SimulatorClient
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until


@dataclass
class RunningSimulator:
    base_url: str
    port: int
    client: SimulatorClient
    process: ManagedProcess

    @property
    def codex_base_url(self) -> str:
        return f"{self.base_url}/backend-api/codex"


@contextmanager
def running_simulator(
    log_dir: Path, accounts: int = 3, extra_args: Sequence[str] = (), cli: bool = False
) -> Iterator[RunningSimulator]:
    """Starts the simulator on a free port. `cli=True` goes through the `pooler simulator` console script;
    the default `python -m pooler.simulator` takes the same flags and starts faster (no other CLI areas)."""
    port = free_port()
    launcher = [str(VENV_BIN / "pooler"), "simulator"] if cli else [str(VENV_BIN / "python"), "-m", "pooler.simulator"]
    argv = [*launcher, "--port", str(port), "--accounts", str(accounts), *extra_args]
    process = ManagedProcess("simulator", argv, log_dir / f"simulator-{port}.log").start()
    base_url = f"http://127.0.0.1:{port}"
    client = SimulatorClient(base_url)
    try:

        def ready() -> bool:
            # A dead process ends the wait at once (True), and is reported below with its log.
            return not process.alive() or ("simulator ready on" in process.log_text() and client.health())

        wait_until(ready, timeout=60, what="simulator ready line")
        if not process.alive():
            raise RuntimeError(f"simulator exited early:\n{process.log_text()}")
        yield RunningSimulator(base_url, port, client, process)
    finally:
        client.close()
        process.stop()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[RunningSimulator]:
    """A fresh simulator (3 plus accounts acct-1..acct-3) per test."""
    with running_simulator(tmp_path) as sim:
        yield sim


@pytest.fixture(scope="module")
def _module_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    with running_simulator(tmp_path_factory.mktemp("simulator")) as sim:
        yield sim


@pytest.fixture
def shared_simulator(_module_simulator: RunningSimulator) -> RunningSimulator:
    """One simulator per test module, reset to its start-up state before each test (cheaper than a process)."""
    _module_simulator.client.reset()
    return _module_simulator


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events of an SSE body as JSON objects; a data line that is not JSON becomes {"_malformed": raw}."""
    events: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
        if not data:
            continue
        try:
            events.append(json.loads(data))
        except json.JSONDecodeError:
            events.append({"_malformed": data})
    return events


TERMINAL_EVENTS = ("response.completed", "error", "response.failed")


async def ws_turn_events(ws: aiohttp.ClientWebSocketResponse, timeout: float = 20) -> list[dict[str, Any]]:
    """A websocket turn's server events after its `response.create`, up to its terminal event (a text frame
    each; anything else fails the test)."""
    events: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        events.append(event)
        if event.get("type") in TERMINAL_EVENTS:
            return events


def upgrade_headers(ws: aiohttp.ClientWebSocketResponse) -> dict[str, str]:
    """The websocket's 101 response headers, lower-cased (aiohttp keeps the handshake response private)."""
    return {k.lower(): v for k, v in ws._response.headers.items()}


def bearer(token: str, account_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if account_id is not None:
        headers["ChatGPT-Account-Id"] = account_id
    return headers


def turn_body(prompt: str = "hi", **fields: Any) -> dict[str, Any]:
    return {
        "model": "gpt-5.1-codex",
        "instructions": "be brief",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}],
        "stream": True,
        **fields,
    }
