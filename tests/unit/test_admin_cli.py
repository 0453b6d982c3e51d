"""`pooler admin` / `pooler dev` CLI modules: start-up stays light, password input errors are one line."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler.db import make_engine
from pooler.models import AdminSession, AuditEvent, Operator, utcnow
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


def test_sign_out_ends_every_session_of_an_operator(tmp_path: Path) -> None:
    with cli_for("sqlite", tmp_path) as cli:
        cli.ok("db", "upgrade")
        assert "does not exist" in cli.fails("admin", "sign-out", "nobody")
        cli.env["POOLER_OPERATOR_PASSWORD"] = "correct horse battery"
        cli.ok("admin", "create-operator", "Alice", "--password-env")
        engine = make_engine(cli.database_url)
        try:
            with Session(engine) as session, session.begin():
                operator_id = session.scalars(select(Operator.id)).one()
                now = utcnow()
                for token_hash in ("a" * 64, "b" * 64):
                    session.add(
                        AdminSession(
                            token_hash=token_hash,
                            operator_id=operator_id,
                            created_at=now,
                            last_seen_at=now,
                            expires_at=now + dt.timedelta(hours=1),
                        )
                    )
            assert "signed out alice: 2 admin session(s) ended" in cli.ok("admin", "sign-out", "alice")
            with Session(engine) as session:
                assert all(row.revoked_at is not None for row in session.scalars(select(AdminSession)))
                assert (
                    session.scalars(select(AuditEvent.action).where(AuditEvent.target_label == "alice")).all()[-1]
                    == "operator.sessions_revoke"
                )
        finally:
            engine.dispose()
