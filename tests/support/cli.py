"""Running the real `pooler` console script as a subprocess against a chosen database and keyring."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pooler.crypto.keyring import new_key_material
from tests.support.databases import throwaway_postgres_database
from tests.support.processes import REPO_ROOT, VENV_BIN


@dataclass
class Cli:
    env: dict[str, str]
    data_dir: Path
    database_url: str
    transcript: list[str] = field(default_factory=list)
    """Every stdout and stderr the CLI produced, for leak scans."""

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(VENV_BIN / "pooler"), *args],
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.data_dir,
            timeout=120,
        )
        self.transcript += [proc.stdout, proc.stderr]
        return proc

    def ok(self, *args: str, stdin: bytes | None = None) -> str:
        proc = self.run(*args, stdin=stdin)
        assert proc.returncode == 0, f"pooler {' '.join(args)} failed: {proc.stderr}"
        assert "Traceback" not in proc.stderr
        return proc.stdout

    def fails(self, *args: str, stdin: bytes | None = None) -> str:
        """Asserts the house error contract: exit 1, exactly one line on stderr, no traceback. Returns that line."""
        proc = self.run(*args, stdin=stdin)
        assert proc.returncode == 1, f"pooler {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("pooler: error: ")
        return lines[0]


def cli_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLER_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=database_url,
        POOLER_DATA_DIR=str(data_dir),
        POOLER_SECRET_KEYS=f"k1:{new_key_material()}",
        POOLER_KEY_PEPPER=new_key_material(),
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env


@contextmanager
def cli_for(backend: str, tmp_path: Path) -> Iterator[Cli]:
    """A CLI bound to a fresh, empty database (not migrated: tests run `pooler db upgrade` themselves)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if backend == "sqlite":
        url = f"sqlite:///{data_dir / 'pooler.db'}"
        yield Cli(cli_env(url, data_dir), data_dir, url)
    else:
        with throwaway_postgres_database("pooler_cli") as url:
            yield Cli(cli_env(url, data_dir), data_dir, url)
