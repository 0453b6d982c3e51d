"""`pooler db upgrade | downgrade --yes | current`: schema migrations (needs no keyring)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pooler.cli.common import command, command_group, database_error, load_cli_config
from pooler.db import make_engine
from pooler.errors import PoolerError

if TYPE_CHECKING:
    from sqlalchemy import Engine

# Alembic is imported inside the handlers: every `pooler` invocation builds the whole argparse tree, and alembic
# alone costs most of a second of start-up.


def head_revision(database_url: str) -> str | None:
    from alembic.script import ScriptDirectory

    from pooler import migrate

    return ScriptDirectory.from_config(migrate.alembic_config(database_url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def safe_url(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)


def _upgrade(_args: argparse.Namespace) -> int:
    from pooler import migrate

    config = load_cli_config()
    try:
        migrate.upgrade(config.database_url)
    except SQLAlchemyError as exc:
        raise database_error(exc) from None
    print(f"database {safe_url(config.database_url)} is at revision {head_revision(config.database_url)} (head)")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    if not args.yes:
        raise PoolerError("db downgrade drops every table and all data; repeat with --yes to confirm")
    from pooler import migrate

    config = load_cli_config()
    try:
        migrate.downgrade(config.database_url, "base")
    except SQLAlchemyError as exc:
        raise database_error(exc) from None
    print(f"database {safe_url(config.database_url)} downgraded to base (empty)")
    return 0


def _current(_args: argparse.Namespace) -> int:
    config = load_cli_config()
    engine = make_engine(config.database_url, hide_parameters=True)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        raise database_error(exc) from None
    finally:
        engine.dispose()
    head = head_revision(config.database_url)
    if revision is None:
        print(f"empty database (head is {head}): run `pooler db upgrade`")
    else:
        print(f"{revision}{' (head)' if revision == head else f' (head is {head})'}")
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "db", "database schema migrations")
    command(group, _upgrade, "upgrade", help="migrate the database to the latest schema")
    p = command(group, _downgrade, "downgrade", help="drop every table (migrate to base)")
    p.add_argument("--yes", action="store_true", help="confirm that all data will be deleted")
    command(group, _current, "current", help="print the current schema revision")
