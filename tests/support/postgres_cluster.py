"""A throwaway PostgreSQL cluster of a test's own (initdb in a temp dir, its own free port), for tests that must
stop and restart the server (the shared test server cannot be restarted under other tests).

    with postgres_cluster() as cluster:
        url = cluster.url              # postgresql://postgres@127.0.0.1:PORT/postgres
        cluster.stop(); cluster.start()

initdb refuses to run as root, so as root the cluster runs as the `postgres` system user (runuser).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port

RUN_AS = "postgres"


def postgres_bin(tool: str) -> str:
    """The newest /usr/lib/postgresql/*/bin/<tool>, else one on PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} not found: install the PostgreSQL server package")
    return path


@dataclass
class PostgresCluster:
    data_dir: Path
    socket_dir: Path
    log_file: Path
    port: int
    _as_user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        cmd = list(argv)
        if self._as_user is not None:
            cmd = ["runuser", "-u", self._as_user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """initdb + start; stops the server and removes the files on exit.

    The files live in a fresh directory of the system temp dir (not pytest's tmp_path, whose parents are
    private to root and so unreachable for the `postgres` user).
    """
    root = Path(tempfile.mkdtemp(prefix="pooler-pgcluster-"))
    data_dir, socket_dir = root / "data", root / "sock"
    socket_dir.mkdir()
    as_user = RUN_AS if os.geteuid() == 0 else None
    if as_user is not None:
        entry = pwd.getpwnam(as_user)
        for path in (root, socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    cluster = PostgresCluster(data_dir, socket_dir, root / "postgres.log", free_port(), as_user)
    try:
        cluster._run(
            postgres_bin("initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            with contextlib.suppress(RuntimeError):
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
