"""Canary: tokens of an imported auth.json appear nowhere in clear - not in the SQLite files, not in a PostgreSQL
dump, not in any CLI output - after every CLI command has run. They exist only as ciphertext."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pooler.db import make_engine
from tests.support import jwt
from tests.support.cli import Cli, cli_for
from tests.support.databases import psycopg_url
from tests.support.dbscan import dump_all_tables


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    with cli_for(request.param, tmp_path) as c:
        yield c


def _needles(canary: str, auth: bytes) -> list[bytes]:
    """The canary itself, each full token, and each JWT payload segment (what a claims dump would contain)."""
    tokens = json.loads(auth)["tokens"]
    needles = [canary.encode()]
    for name in ("id_token", "access_token", "refresh_token"):
        needles.append(tokens[name].encode())
        if name != "refresh_token":
            needles.append(tokens[name].split(".")[1].encode())
    # The canary base64-encoded at the three alignments, so a base64 copy of any token is caught too.
    for pad in range(3):
        encoded = base64.b64encode(b"x" * pad + canary.encode()).decode()
        needles.append(encoded[4 if pad else 0 : -4].encode())
    return needles


def _every_command(cli: Cli, auth_path: Path, auth: bytes, reimport: bytes) -> None:
    cli.ok("secrets", "init")
    cli.ok("db", "upgrade")
    cli.ok("db", "current")
    cli.ok("pool", "create", "canary-pool", "--label", "Canary")
    cli.ok("pool", "create", "other-pool")
    key = cli.run("key", "create", "--pool", "canary-pool", "--label", "k", "--rpm", "5", "--model", "gpt-5")
    assert key.returncode == 0
    prefix = key.stdout.strip()[:12]
    cli.ok("key", "list")
    cli.ok("account", "import", "--pool", "canary-pool", str(auth_path))
    cli.fails("account", "import", "--pool", "canary-pool", str(auth_path))  # already in pool
    cli.ok("account", "import", "--pool", "canary-pool", "--replace", "-", stdin=reimport)
    cli.ok("account", "import", "--pool", "other-pool", "-", stdin=auth)
    cli.ok("account", "list")
    cli.ok("account", "list", "--pool", "canary-pool")
    cli.ok("pool", "list")
    cli.ok("pool", "show", "canary-pool")
    cli.ok("pool", "pause", "canary-pool")
    cli.ok("pool", "resume", "canary-pool")
    cli.ok("key", "pause", prefix)
    cli.ok("key", "resume", prefix)
    rotated = cli.run("key", "rotate", prefix)
    assert rotated.returncode == 0
    cli.ok("key", "revoke", rotated.stdout.strip()[:12])
    cli.ok("secrets", "rotate")
    cli.ok("secrets", "rotate", "--force")
    cli.ok("status")


def _database_bytes(cli: Cli) -> bytes:
    if cli.database_url.startswith("sqlite"):
        engine = make_engine(cli.database_url)
        try:
            blob = dump_all_tables(engine)
        finally:
            engine.dispose()
        # The raw files too (main DB, WAL, shared memory): free pages may still hold old row images.
        files = sorted(cli.data_dir.glob("pooler.db*"))
        assert files
        return blob + b"".join(f.read_bytes() for f in files)
    engine = make_engine(psycopg_url(cli.database_url))
    try:
        blob = dump_all_tables(engine)
    finally:
        engine.dispose()
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is required for the canary test"
    dump = subprocess.run([pg_dump, "--no-owner", cli.database_url], capture_output=True, timeout=120, check=True)
    assert b"account_secrets" in dump.stdout
    return blob + dump.stdout


def test_tokens_never_appear_in_clear(cli: Cli) -> None:
    canary = f"CANARY{secrets.token_hex(8)}"
    auth = jwt.auth_json(account_id="acct-canary", email="grace@example.com", canary=canary)
    reimport = jwt.auth_json(account_id="acct-canary", email="grace@example.com", canary=canary, refresh_token="rt2")
    assert canary.encode() in auth and canary.encode() in reimport
    auth_path = cli.data_dir / "auth.json"
    auth_path.write_bytes(auth)

    _every_command(cli, auth_path, auth, reimport)
    auth_path.unlink()  # the operator's own file is not ours to scan

    stored = _database_bytes(cli)
    assert b"acct-canary" in stored  # the scan does see the database (sanity)
    output = "\n".join(cli.transcript).encode()
    assert b"acct-canary" in output
    logs = b"".join(p.read_bytes() for p in cli.data_dir.rglob("*") if p.is_file() and "pooler.db" not in p.name)
    haystacks = {"database": stored, "cli output": output, "data dir files": logs}
    hits = [
        (where, needle[:24])
        for needle in _needles(canary, reimport) + _needles(canary, auth)
        for where, blob in haystacks.items()
        if needle in blob
    ]
    assert hits == []
