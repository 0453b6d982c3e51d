"""`pooler setting list|get|set|reset` as a subprocess on SQLite and PostgreSQL; secrets never printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Cli, cli_for

CANARY = "whsec-CANARY-7f3a9c"


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    with cli_for(request.param, tmp_path) as c:
        c.ok("db", "upgrade")
        yield c


def test_list_get_set_reset(cli: Cli) -> None:
    listing = cli.ok("setting", "list")
    assert "demotion_seconds" in listing and "(secret, not set)" in listing
    assert cli.ok("setting", "get", "demotion_seconds").strip() == "30"
    assert cli.ok("setting", "set", "demotion_seconds", "45").strip() == "demotion_seconds = 45"
    assert cli.ok("setting", "get", "demotion_seconds").strip() == "45"
    assert cli.ok("setting", "set", "smtp_starttls", "off").strip() == "smtp_starttls = false"
    cli.ok("setting", "reset", "demotion_seconds")
    assert cli.ok("setting", "get", "demotion_seconds").strip() == "30"


def test_json_setting(cli: Cli) -> None:
    table = {"gpt-5": {"input": 1.25, "cached_input": 0.125, "output": 10}}
    assert cli.ok("setting", "get", "admin_model_pricing").strip() == "-"
    cli.ok("setting", "set", "admin_model_pricing", "-", stdin=json.dumps(table).encode())
    assert json.loads(cli.ok("setting", "get", "admin_model_pricing")) == table
    assert '{"gpt-5":' in cli.ok("setting", "list")


def test_secret_settings_are_write_only(cli: Cli) -> None:
    line = cli.fails("setting", "set", "alert_webhook_secret", CANARY)
    assert "stdin" in line
    assert cli.ok("setting", "set", "alert_webhook_secret", stdin=(CANARY + "\n").encode()).strip() == (
        "alert_webhook_secret = (secret, set)"
    )
    assert cli.ok("setting", "get", "alert_webhook_secret").strip() == "(secret, set)"
    assert "(secret, set)" in cli.ok("setting", "list")
    cli.ok("setting", "reset", "alert_webhook_secret")
    assert cli.ok("setting", "get", "alert_webhook_secret").strip() == "(secret, not set)"
    assert not any(CANARY in text for text in cli.transcript)


def test_errors_are_one_line(cli: Cli) -> None:
    assert "unknown setting" in cli.fails("setting", "get", "nope")
    assert "must be of type int" in cli.fails("setting", "set", "demotion_seconds", "soon")
    assert "at least" in cli.fails("setting", "set", "demotion_seconds", "-5")
    assert "JSON object" in cli.fails("setting", "set", "admin_model_pricing", "[1]")
    assert cli.ok("setting", "get", "demotion_seconds").strip() == "30"  # nothing half-written
