"""Alembic migrations: models and migrated schema agree, and upgrade/downgrade round-trips on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from pooler.db import make_engine
from pooler.migrate import downgrade, upgrade
from pooler.models import Base
from tests.support.databases import throwaway_postgres_database


def _diff(url: str) -> list[object]:
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    assert _diff(db_url) == []


def _tables(url: str) -> set[str]:
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    upgrade(url)
    assert set(Base.metadata.tables) <= _tables(url)
    downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}
    upgrade(url)
    assert set(Base.metadata.tables) <= _tables(url)


def test_upgrade_downgrade_upgrade_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _round_trip(f"sqlite:///{tmp_path / 'rt.db'}")


def test_upgrade_downgrade_upgrade_postgres() -> None:
    with throwaway_postgres_database("pooler_rt") as url:
        _round_trip(url)
