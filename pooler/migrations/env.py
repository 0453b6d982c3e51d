"""Alembic environment: the URL comes from our config; PostgreSQL migrations hold an advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from pooler.config import load_config
from pooler.db import make_engine
from pooler.models import Base

MIGRATION_LOCK_ID = 0x706F6F6C  # "pool": serialises concurrent `db upgrade` runs on PostgreSQL


def run_migrations_online() -> None:
    url = context.config.attributes.get("database_url") or load_config().database_url
    connectable = context.config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    postgres = connection.dialect.name == "postgresql"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    if postgres:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()


run_migrations_online()
