"""`pooler metrics token create|clear` as a subprocess on SQLite and PostgreSQL: printed once, stored hashed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pooler.crypto.hashing import KeyedHasher
from pooler.crypto.keyring import parse_pepper
from pooler.metrics_token import PURPOSE, TOKEN_PREFIX, allowed
from tests.support.cli import Cli, cli_for


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    with cli_for(request.param, tmp_path) as c:
        c.ok("db", "upgrade")
        yield c


def _stored_hash(cli: Cli) -> str | None:
    value = cli.ok("setting", "get", "metrics_token_hash").strip()
    return None if value == "-" else value


def test_create_prints_once_and_stores_only_the_hash(cli: Cli) -> None:
    assert _stored_hash(cli) is None
    proc = cli.run("metrics", "token", "create")
    assert proc.returncode == 0, proc.stderr
    raw = proc.stdout.strip()
    assert raw.startswith(TOKEN_PREFIX) and "\n" not in raw  # stdout is the token alone
    assert raw not in proc.stderr
    stored = _stored_hash(cli)
    assert stored is not None and raw not in stored
    hasher = KeyedHasher(parse_pepper(cli.env["POOLER_KEY_PEPPER"]))
    assert stored == hasher.hexdigest(PURPOSE, raw)
    assert allowed(hasher, stored, f"Bearer {raw}")
    # Nothing else the CLI printed (listing included) shows the raw token again.
    cli.ok("setting", "list")
    assert sum(raw in text for text in cli.transcript) == 1

    # A second token replaces the first.
    second = cli.ok("metrics", "token", "create").strip()
    assert second != raw
    replaced = _stored_hash(cli)
    assert replaced is not None and not allowed(hasher, replaced, f"Bearer {raw}")
    assert allowed(hasher, replaced, f"Bearer {second}")


def test_clear_opens_metrics_again(cli: Cli) -> None:
    cli.ok("metrics", "token", "create")
    assert _stored_hash(cli) is not None
    cli.ok("metrics", "token", "clear")
    assert _stored_hash(cli) is None
    cli.ok("metrics", "token", "clear")  # idempotent
    assert "create" in cli.ok("metrics", "token", "--help")
