"""Test databases: a fresh SQLite file and a fresh PostgreSQL database per test session.

Each pytest session creates its own PostgreSQL database on the server named by TEST_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/test) so concurrent runs never collide, migrates it from empty with
Alembic, and drops it at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_TEST_DATABASE_URL
    if url.startswith("sqlite"):
        url = DEFAULT_TEST_DATABASE_URL
    return url


def psycopg_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if "+psycopg" not in url else url


@contextmanager
def throwaway_postgres_database(prefix: str = "pooler_test") -> Iterator[str]:
    """Yields the plain postgresql:// URL of a new empty database; drops it afterwards."""
    base = make_url(psycopg_url(server_url()))
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        yield url.replace("postgresql+psycopg://", "postgresql://", 1)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
