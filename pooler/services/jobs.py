"""Scheduler job runs and the operational settings the lifecycle jobs read.

A job run is claimed by inserting its (job_id, slot) row: the unique constraint makes a second claim of the
same slot fail, so no job runs twice for one scheduled fire time even if two leaders ever overlapped.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pooler.models import JobRun, utcnow
from pooler.settings import get_setting

log = logging.getLogger(__name__)

# The settings these jobs read (defaults and validation live in the pooler.settings catalogue).
SETTING_NAMES = (
    "auth_base_url",
    "upstream_base_url",
    "oauth_client_id",
    "refresh_horizon_hours",
    "usage_poll_interval_seconds",
    "quota_evidence_stale_seconds",
    "request_log_retention_days",
)


@dataclass(frozen=True)
class LifecycleSettings:
    auth_base_url: str
    upstream_base_url: str
    oauth_client_id: str
    refresh_horizon: dt.timedelta
    usage_poll_interval: dt.timedelta
    quota_evidence_stale: dt.timedelta
    request_log_retention: dt.timedelta


def load_settings(session: Session, overrides: Mapping[str, Any] | None = None) -> LifecycleSettings:
    """Reads the settings once per job run (so an operator's change applies from the next run)."""
    values: dict[str, Any] = {name: get_setting(session, name) for name in SETTING_NAMES}
    values.update(overrides or {})
    return LifecycleSettings(
        auth_base_url=str(values["auth_base_url"]),
        upstream_base_url=str(values["upstream_base_url"]),
        oauth_client_id=str(values["oauth_client_id"]),
        refresh_horizon=dt.timedelta(hours=float(values["refresh_horizon_hours"])),
        usage_poll_interval=dt.timedelta(seconds=float(values["usage_poll_interval_seconds"])),
        quota_evidence_stale=dt.timedelta(seconds=float(values["quota_evidence_stale_seconds"])),
        request_log_retention=dt.timedelta(days=float(values["request_log_retention_days"])),
    )


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def floor_slot(now: dt.datetime, interval: dt.timedelta) -> dt.datetime:
    """The grid time at or before `now` for a job firing every `interval` since the Unix epoch.

    Every scheduler process computes the same slot for the same fire, whichever one is leader.
    """
    seconds = interval.total_seconds()
    stamp = now.timestamp()
    return dt.datetime.fromtimestamp(stamp - (stamp % seconds), dt.UTC)


def claim_run(factory: sessionmaker[Session], job_id: str, slot: dt.datetime, runner: str) -> int | None:
    """Inserts the run row; None when this slot was already claimed (by us or another leader)."""
    try:
        with factory.begin() as session:
            run = JobRun(job_id=job_id, slot=slot, started_at=utcnow(), outcome="running", runner=runner)
            session.add(run)
            session.flush()
            return int(run.id)
    except IntegrityError:
        return None


def finish_run(
    factory: sessionmaker[Session],
    run_id: int,
    outcome: str,
    counts: Mapping[str, int] | None,
    error_code: str | None = None,
) -> None:
    with factory.begin() as session:
        session.execute(
            update(JobRun)
            .where(JobRun.id == run_id)
            .values(finished_at=utcnow(), outcome=outcome, counts=dict(counts or {}), error_code=error_code)
        )


JobFunc = Callable[[dt.datetime], Mapping[str, int]]


def execute(
    factory: sessionmaker[Session], job_id: str, slot: dt.datetime, func: JobFunc, runner: str | None = None
) -> str | None:
    """Claims the slot, runs `func(now)` and records the outcome. Returns the outcome, or None if not claimed.

    `func` returns counts; a count named `failed` above zero makes the outcome `partial`. An exception is
    recorded as `failed` with its class name as the safe error code (messages may carry upstream text).
    """
    run_id = claim_run(factory, job_id, slot, runner or runner_name())
    if run_id is None:
        return None
    try:
        counts = func(utcnow())
    except Exception as exc:
        log.exception("job %s failed", job_id)
        finish_run(factory, run_id, "failed", None, type(exc).__name__[:64])
        return "failed"
    outcome = "partial" if counts.get("failed", 0) else "success"
    finish_run(factory, run_id, outcome, counts)
    return outcome


def recent_runs(session: Session, limit: int = 50, job_id: str | None = None) -> list[JobRun]:
    query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
    if job_id is not None:
        query = query.where(JobRun.job_id == job_id)
    return list(session.scalars(query))
