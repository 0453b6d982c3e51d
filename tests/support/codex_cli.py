"""Running the real Codex CLI (npm @openai/codex, pinned by `make codex-cli`) in a throwaway home.

The e2e tests point it at the simulator or at the gateway; only the provider, the env var its bearer comes
from and the timeout differ.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

CODEX_BIN = REPO_ROOT / "var" / "node" / "node_modules" / ".bin" / "codex"
CODEX_PREV_BIN = REPO_ROOT / "var" / "node-prev" / "node_modules" / ".bin" / "codex"
"""The previous pin (`make codex-cli` installs both): one end-to-end turn keeps it working."""


def pinned_versions() -> dict[str, str]:
    """The Makefile's pins (`CODEX_VERSION`, `CODEX_PREV_VERSION`): the tests check the installed binaries are
    these, so a stale install cannot pass for the pinned one."""
    found = re.findall(r"^(CODEX(?:_PREV)?_VERSION) := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    return dict(found)


MODEL = "gpt-5.1-codex"


def write_codex_config(
    home: Path, *, provider: str, provider_name: str, base_url: str, env_key: str, websockets: bool
) -> Path:
    """A Codex home whose only provider is `base_url`, with the bearer read from `env_key`."""
    home.mkdir(parents=True, exist_ok=True)
    # Update checks, analytics, feedback and client retries off: nothing may reach for another host, and a
    # failure must show at once rather than after backoff (behind the gateway, the gateway does the failover).
    (home / "config.toml").write_text(
        f"""model = "{MODEL}"
model_provider = "{provider}"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[model_providers.{provider}]
name = "{provider_name}"
base_url = "{base_url}"
env_key = "{env_key}"
wire_api = "responses"
supports_websockets = {"true" if websockets else "false"}
request_max_retries = 0
stream_max_retries = 0
"""
    )
    return home


def run_codex_exec(
    tmp_path: Path, home: Path, env_key: str, bearer: str, timeout: float, codex_bin: Path = CODEX_BIN
) -> subprocess.CompletedProcess[str]:
    """`codex exec "say hello"` read-only in `tmp_path/work`, with only PATH, HOME, CODEX_HOME and the bearer set."""
    if not codex_bin.exists():
        pytest.fail(f"Codex CLI not installed at {codex_bin}: run `make codex-cli` first")
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        env_key: bearer,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(codex_bin), "exec", "--strict-config", "--skip-git-repo-check", "-s", "read-only", "say hello"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
