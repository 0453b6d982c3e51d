"""The `pooler` CLI as a subprocess on SQLite and PostgreSQL: the happy path, and failures that are one line on
stderr, exit 1, no traceback and write nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from pooler.db import make_engine
from pooler.migrate import alembic_config
from pooler.models import AccountSecret, AuditEvent, Pool, PoolKey, UpstreamAccount
from pooler.poolkeys import KEY_RE
from tests.support import jwt
from tests.support.cli import Cli, cli_for
from tests.support.databases import psycopg_url


def _head() -> str | None:
    """The newest migration, whichever it is: a new migration must not have to edit these tests."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    with cli_for(request.param, tmp_path) as c:
        yield c


def _row_counts(cli: Cli) -> dict[str, int]:
    url = psycopg_url(cli.database_url) if cli.database_url.startswith("postgresql") else cli.database_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                m.__tablename__: int(conn.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Pool, PoolKey, UpstreamAccount, AccountSecret, AuditEvent)
            }
    finally:
        engine.dispose()


def test_happy_path(cli: Cli) -> None:
    assert "(head)" in cli.ok("db", "upgrade")
    # The newest migration, whichever it is: new migrations must not have to edit this test.
    assert cli.ok("db", "current").startswith(f"{_head()} (head)")
    cli.ok("pool", "create", "team-a", "--label", "Team A", "--strategy", "round-robin")
    assert re.search(r"team-a\s+active\s+round-robin", cli.ok("pool", "list"))

    proc = cli.run(
        "key",
        "create",
        "--pool",
        "team-a",
        "--label",
        "ci",
        "--model",
        "gpt-5",
        "--rpm",
        "60",
        "--tokens-per-day",
        "100000",
        "--expires-in-days",
        "30",
    )
    assert proc.returncode == 0, proc.stderr
    raw = proc.stdout.strip()
    match = KEY_RE.match(raw)
    assert match and proc.stdout.count("\n") == 1
    prefix = match.group(1)
    listing = cli.ok("key", "list", "--pool", "team-a")
    assert prefix in listing and raw not in listing and "gpt-5" in listing

    auth = cli.data_dir / "auth.json"
    auth.write_bytes(jwt.auth_json(account_id="acct-cli-1", email="frank@example.com"))
    assert "imported new account" in cli.ok("account", "import", "--pool", "team-a", str(auth))
    expired = jwt.auth_json(account_id="acct-cli-2", email=None, expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert "state refresh_due" in cli.ok("account", "import", "--pool", "team-a", "-", stdin=expired)
    assert "epoch 2" in cli.ok("account", "import", "--pool", "team-a", "--replace", str(auth))
    accounts = cli.ok("account", "list", "--pool", "team-a")
    assert "frank" in accounts and "acct-cli-2" in accounts and "refresh_due" in accounts
    shown = cli.ok("pool", "show", "team-a")
    assert "2 (1 ready; active 1, refresh_due 1)" in shown

    status = cli.ok("status")
    assert f"revision {_head()} (head)" in status and "current key k1" in status
    assert "accounts:  2 (active 1, refresh_due 1)" in status

    assert "is paused" in cli.ok("key", "pause", prefix)
    assert "is active" in cli.ok("key", "resume", prefix)
    rotated = cli.run("key", "rotate", prefix)
    assert rotated.returncode == 0 and KEY_RE.match(rotated.stdout.strip())
    new_prefix = KEY_RE.match(rotated.stdout.strip()).group(1)  # type: ignore[union-attr]
    assert "is revoked" in cli.ok("key", "revoke", new_prefix)
    assert "is paused" in cli.ok("pool", "pause", "team-a")
    assert "is active" in cli.ok("pool", "resume", "team-a")
    assert "re-encrypted 6 secrets" in cli.ok("secrets", "rotate", "--force")

    assert "--yes" in cli.fails("db", "downgrade")
    cli.ok("db", "downgrade", "--yes")
    assert "empty" in cli.ok("db", "current")
    assert cli.run("status").returncode == 1


def test_failures_are_one_line_and_write_nothing(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    cli.ok("pool", "create", "team-a")
    good = cli.data_dir / "good.json"
    good.write_bytes(jwt.auth_json(account_id="acct-fail-1"))
    cli.ok("account", "import", "--pool", "team-a", str(good))
    before = _row_counts(cli)

    assert cli.fails("account", "import", "--pool", "missing", str(good)) == (
        "pooler: error: pool 'missing' does not exist"
    )
    bad = cli.data_dir / "bad.json"
    bad.write_bytes(b'{"tokens": {"access_token": "SECRET-TOKEN-TEXT"')
    assert cli.fails("account", "import", "--pool", "team-a", str(bad)) == "pooler: error: auth.json is not valid JSON"
    api_key = json.dumps({"OPENAI_API_KEY": "sk-SECRET"}).encode()
    line = cli.fails("account", "import", "--pool", "team-a", "-", stdin=api_key)
    assert "API-key mode" in line and "sk-SECRET" not in line
    assert "is already in pool 'team-a'" in cli.fails("account", "import", "--pool", "team-a", str(good))
    assert "cannot read" in cli.fails("account", "import", "--pool", "team-a", str(cli.data_dir / "nope.json"))
    big = cli.data_dir / "big.json"
    big.write_bytes(b" " * (70 * 1024))
    assert "larger than 64 KiB" in cli.fails("account", "import", "--pool", "team-a", str(big))
    assert "already exists" in cli.fails("pool", "create", "team-a")
    assert "does not exist" in cli.fails("pool", "show", "nope")
    assert "does not exist" in cli.fails("key", "create", "--pool", "nope", "--label", "x")
    assert "no Pool key" in cli.fails("key", "revoke", "cpk_00000000")
    assert "not both" in cli.fails(
        "key", "create", "--pool", "team-a", "--label", "x", "--expires-at", "2030-01-01", "--expires-in-days", "3"
    )
    assert "in the future" in cli.fails(
        "key", "create", "--pool", "team-a", "--label", "x", "--expires-at", "2001-01-01"
    )
    assert _row_counts(cli) == before
    for text in cli.transcript:
        assert "SECRET" not in text


def test_unmigrated_database_and_bad_keyring(cli: Cli) -> None:
    line = cli.fails("pool", "list")
    assert "run `pooler db upgrade`" in line
    cli.env["POOLER_SECRET_KEYS"] = "k1:c2hvcnQ=,oops"
    cli.env["POOLER_KEY_PEPPER"] = "also-bad"
    line = cli.fails("pool", "list")
    assert line.startswith("pooler: error: invalid configuration: ")
    assert "'k1' must decode to 32 bytes" in line and "id:base64key" in line and "POOLER_KEY_PEPPER" in line


def test_secrets_init_creates_dev_keyring_once(tmp_path: Path) -> None:
    with cli_for("sqlite", tmp_path) as cli:
        del cli.env["POOLER_SECRET_KEYS"], cli.env["POOLER_KEY_PEPPER"]
        first = cli.ok("secrets", "init")
        keyring = cli.data_dir / "keyring.env"
        assert str(keyring) in first and keyring.exists()
        assert cli.ok("secrets", "init") == ""
        cli.ok("db", "upgrade")
        assert "current key dev1" in cli.ok("status")
