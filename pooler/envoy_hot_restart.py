"""The Envoy that `pooler up` runs, and its hot restart: a new config (or a new Envoy binary) without a refused
request.

Envoy's own mechanism: a second Envoy started with the next `--restart-epoch` and the same `--base-id` loads its
config, health-checks its clusters, takes copies of the listen sockets from the running one and tells it to
drain. The old one stops accepting and closes its connections as their requests end (`--drain-strategy
immediate`: a keep-alive HTTP/1.1 response gets `connection: close`, HTTP/2 a GOAWAY); requests in flight on it
(a long Codex turn, a websocket session) go on until the new one tells it to exit, `--parent-shutdown-time-s`
after its start (the `envoy_drain_seconds` setting): whatever is still open then is cut.

The first Envoy picks a free base id (`--use-dynamic-base-id`) and writes it to a file beside the config, so two
`pooler up` on one host never meet in shared memory. An Envoy that crashed is started again at epoch 0 (a
successor without a living parent waits for it for ever).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pooler.supervisor import ChildSpec, Probe

VALIDATE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class EnvoyProcess:
    binary: str
    config_path: Path
    admin_port: int
    ready: Probe
    """The listener answers and the admin's /ready says LIVE (whichever epoch)."""

    @property
    def base_id_path(self) -> Path:
        return self.config_path.with_name(f"{self.config_path.name}.base-id")

    def _argv(self, drain_seconds: int) -> list[str]:
        return [
            self.binary,
            "-c",
            str(self.config_path),
            "--log-level",
            "error",
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            str(drain_seconds),
            "--parent-shutdown-time-s",
            str(drain_seconds),
        ]

    def first(self, drain_seconds: int) -> ChildSpec:
        """Epoch 0, on a base id of its own: at start, and after a crash."""
        argv = [*self._argv(drain_seconds), "--use-dynamic-base-id", "--base-id-path", str(self.base_id_path)]
        return ChildSpec("envoy", argv, probe=self._at_epoch(0))

    def successor(self, epoch: int, drain_seconds: int) -> ChildSpec:
        """The hot-restart successor of the Envoy running at `epoch - 1`."""
        base_id = self.base_id_path.read_text().strip()
        argv = [*self._argv(drain_seconds), "--restart-epoch", str(epoch), "--base-id", base_id]
        return ChildSpec("envoy", argv, probe=self._at_epoch(epoch), respawn=self.first(drain_seconds))

    def running_epoch(self) -> int:
        """The restart epoch of the Envoy whose admin answers (the newest: an old one closes its admin as soon as
        its successor starts)."""
        return self._server_info()[0]

    def _server_info(self) -> tuple[int, str]:
        """(restart epoch, state) from the admin's /server_info."""
        url = f"http://127.0.0.1:{self.admin_port}/server_info"
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            info = json.loads(resp.read())
        return int(info["command_line_options"]["restart_epoch"]), str(info["state"])

    def _at_epoch(self, epoch: int) -> Probe:
        # The admin port is the old Envoy's until its successor takes it over: /ready alone could be the old one's.
        def probe() -> bool:
            return self._server_info() == (epoch, "LIVE") and self.ready()

        return probe

    def invalid(self, text: str) -> str | None:
        """Why Envoy would refuse this config (`envoy --mode validate`), or None: checked before a hot restart,
        so a config the successor cannot load never reaches it (the running Envoy closes its admin the moment a
        successor starts)."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=self.config_path.parent) as candidate:
            candidate.write(text)
            candidate.flush()
            argv = [self.binary, "--mode", "validate", "-c", candidate.name, "--disable-hot-restart", "-l", "error"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=VALIDATE_TIMEOUT_SECONDS, check=False)
        if done.returncode == 0:
            return None
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        return lines[-1] if lines else f"envoy --mode validate exited with {done.returncode}"
