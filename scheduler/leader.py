"""Leader election: one scheduler process executes jobs, the others stand by and take over within seconds.

- PostgreSQL: a session-level advisory lock held on a dedicated connection. The server frees it when that
  session ends (process death, connection loss, server restart), so a standby's next `pg_try_advisory_lock`
  succeeds. The holder pings its connection every tick: a failed ping means the lock may be gone, so it stops
  leading at once and reconnects.
- SQLite: an exclusive `fcntl.flock` on a file next to the database; the kernel drops it when the process dies.

`tick()` is called from the main loop every ~0.5 s and returns whether this process leads now.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Protocol

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

ADVISORY_KEY = 0x706F6F6C_73636864  # "poolschd": a fixed bigint only the scheduler uses
CONNECT_TIMEOUT = 3


class Leader(Protocol):
    @property
    def is_leader(self) -> bool: ...

    def tick(self) -> bool: ...

    def release(self) -> None: ...


class PostgresLeader:
    def __init__(self, database_url: str, key: int = ADVISORY_KEY) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._key = key
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._leader = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    def _drop(self) -> None:
        if self._leader:
            log.warning("lost leadership (database connection lost)")
        self._leader = False
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def tick(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name="pooler-scheduler"
                )
            if self._leader:
                self._conn.execute("SELECT 1")  # liveness of the session that holds the lock
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                if row is not None and row[0]:
                    self._leader = True
                    log.info("acquired leadership (advisory lock)")
        except psycopg.Error as exc:
            log.debug("leader tick failed: %s", type(exc).__name__)
            self._drop()
        return self._leader

    def release(self) -> None:
        if self._conn is not None and self._leader:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        self._leader = False
        self._drop()


class FileLeader:
    def __init__(self, lock_path: Path) -> None:
        self._path = lock_path
        self._file: IO[str] | None = None

    @property
    def is_leader(self) -> bool:
        return self._file is not None

    def tick(self) -> bool:
        if self._file is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self._path, "a+")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        log.info("acquired leadership (file lock %s)", self._path)
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def sqlite_lock_path(database_url: str) -> Path:
    database = make_url(database_url).database or "pooler.db"
    return Path(database).with_name(Path(database).name + ".scheduler.lock")


def make_leader(database_url: str) -> Leader:
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresLeader(database_url)
    return FileLeader(sqlite_lock_path(database_url))
