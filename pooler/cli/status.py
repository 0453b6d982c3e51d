"""`pooler status`: is the database reachable and migrated, what is in it, which key encrypts.

Diagnostic: it reports every problem it finds (configuration, keyring, database) and exits 1 if there was one.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pooler.cli.common import command, database_error, load_cli_config
from pooler.cli.db import current_revision, head_revision, safe_url
from pooler.crypto.keyring import load_server_secrets
from pooler.db import make_engine, make_session_factory
from pooler.errors import ConfigError
from pooler.services import views


def _counts(label: str, counter: dict[str, int]) -> str:
    total = sum(counter.values())
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))
    return f"{label}{total}" + (f" ({parts})" if parts else "")


def _inventory(session: Session) -> list[str]:
    return [
        _counts("pools:     ", views.pool_status_counts(session)),
        _counts("accounts:  ", views.account_state_counts(session)),
        _counts("keys:      ", views.key_status_counts(session)),
    ]


def _status(_args: argparse.Namespace) -> int:
    config = load_cli_config()
    ok = True
    try:
        server = load_server_secrets(config)
        ids = ", ".join(server.keyring.keys)
        print(f"keyring:   current key {server.keyring.current_id} (keys: {ids}); pepper set")
    except ConfigError as exc:
        ok = False
        print("keyring:   PROBLEM: " + "; ".join(exc.problems))
    engine = make_engine(config.database_url, hide_parameters=True)
    try:
        revision = current_revision(engine)
        head = head_revision(config.database_url)
        if revision is None:
            ok = False
            print(f"database:  {safe_url(config.database_url)} reachable but empty: run `pooler db upgrade`")
        else:
            note = "(head)" if revision == head else f"(head is {head}: run `pooler db upgrade`)"
            print(f"database:  {safe_url(config.database_url)} reachable, revision {revision} {note}")
            with make_session_factory(engine).begin() as session:
                for line in _inventory(session):
                    print(line)
    except SQLAlchemyError as exc:
        ok = False
        print(f"database:  {safe_url(config.database_url)} PROBLEM: {database_error(exc)}")
    finally:
        engine.dispose()
    return 0 if ok else 1


def register(subparsers: Any) -> None:
    command(subparsers, _status, "status", help="database, schema revision, inventory and keyring at a glance")
