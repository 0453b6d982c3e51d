"""Makes sure the test PostgreSQL server answers; starts the local cluster once if it does not."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import psycopg

URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def reachable() -> bool:
    try:
        with psycopg.connect(URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def main() -> int:
    if reachable():
        return 0
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if versions:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if reachable():
                return 0
            time.sleep(0.5)
    print(f"PostgreSQL is not reachable at {URL}: start it or set TEST_DATABASE_URL", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
