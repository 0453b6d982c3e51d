"""Everything stored in the database as one blob, for "this value is never stored" assertions."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, select, table
from sqlalchemy.sql import column


def _as_bytes(value: object) -> bytes:
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, bytes):
        return value
    return repr(value).encode()


def dump_all_tables(engine: Engine) -> bytes:
    """Every column of every table (including ones the models do not know), text and bytes alike."""
    out: list[bytes] = []
    with engine.connect() as conn:
        inspector = inspect(conn)
        for name in inspector.get_table_names():
            columns = [column(c["name"]) for c in inspector.get_columns(name)]
            for row in conn.execute(select(*columns).select_from(table(name))):
                out.extend(_as_bytes(value) for value in row)
    return b"\n".join(out)
