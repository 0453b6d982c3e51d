"""`pooler admin` / `pooler dev` CLI modules: start-up stays light, password input errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.cli import cli_for
from tests.support.processes import REPO_ROOT

LAZY = ("pooler.services.operators", "pooler.services.seed", "argon2", "pyotp")


def test_building_the_parser_skips_heavy_modules() -> None:
    """`pooler --help` imports every command module; these must load only when their command runs."""
    code = (
        "import sys; from pooler.cli.main import build_parser; build_parser(); "
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == ""


def test_create_operator_without_password_is_one_line(tmp_path: Path) -> None:
    with cli_for("sqlite", tmp_path) as cli:
        cli.ok("db", "upgrade")
        assert "POOLER_OPERATOR_PASSWORD is not set" in cli.fails("admin", "create-operator", "x", "--password-env")
        # getpass warns on stderr that it cannot hide input without a terminal; the error is still one line.
        proc = cli.run("admin", "create-operator", "x", stdin=b"")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert (
            proc.stderr.strip()
            .splitlines()[-1]
            .endswith("pooler: error: no password given (use --password-env in scripts)")
        )
