"""Operational settings, scheduler job runs, and the routing change counter."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pooler.models.base import Base, int_pk, str64, str200, utc_now


class Setting(Base):
    """One DB-managed operational setting (see pooler.settings for the catalogue and defaults)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    """`{"v": <json value>}`; secret settings hold `{"key_id", "nonce", "ciphertext"}` (base64)."""
    updated_at: Mapped[utc_now]
    updated_by: Mapped[str200 | None]


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job_id", "slot"),)

    id: Mapped[int_pk]
    job_id: Mapped[str64]
    slot: Mapped[dt.datetime]
    """The scheduled fire time; unique per job, so no job can run twice for the same slot."""
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    """running, success, partial, failed."""
    error_code: Mapped[str64 | None]
    counts: Mapped[dict[str, Any] | None]
    runner: Mapped[str200 | None]
    """host:pid of the leader that ran it."""
    requested_by: Mapped[str200 | None]
    """The operator whose run-now request this run answered; None for a scheduled run (its slot is on the grid)."""


class JobRequest(Base):
    """An operator's "run now": the admin inserts it, the scheduler's leader polls for it within seconds.

    The admin and the scheduler are separate processes that share only the database, so the request is a row.
    """

    __tablename__ = "job_requests"

    id: Mapped[int_pk]
    job_id: Mapped[str64]
    requested_by: Mapped[str200]
    requested_at: Mapped[dt.datetime]
    picked_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    """When a leader claimed it (None = waiting); a claim is one conditional UPDATE, so only one leader runs it."""
    run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id", ondelete="SET NULL"))


class DataVersion(Base):
    """Monotonic counters bumped in the same transaction as routing-relevant writes.

    The gateway polls `routing` cheaply (SQLite) or is woken by NOTIFY (PostgreSQL) and reloads its snapshot.
    """

    __tablename__ = "data_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[utc_now]
