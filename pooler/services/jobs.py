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
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pooler.models import JobRequest, JobRun, utcnow
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


JOB_IDS = ("refresh_due_tokens", "refresh_requested", "poll_usage", "housekeeping", "evaluate_alerts")
"""Every scheduler job (the scheduler's job table names these; a test holds the two to agreement). The admin
offers "run now" for these without importing the scheduler process package."""


def claim_run(
    factory: sessionmaker[Session], job_id: str, slot: dt.datetime, runner: str, requested_by: str | None = None
) -> int | None:
    """Inserts the run row; None when this slot was already claimed (by us or another leader)."""
    try:
        with factory.begin() as session:
            run = JobRun(
                job_id=job_id,
                slot=slot,
                started_at=utcnow(),
                outcome="running",
                runner=runner,
                requested_by=requested_by,
            )
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
    return _run_claimed(factory, job_id, run_id, func)


def _run_claimed(factory: sessionmaker[Session], job_id: str, run_id: int, func: JobFunc) -> str:
    try:
        counts = func(utcnow())
    except Exception as exc:
        if isinstance(exc, OperationalError):
            # The database went away or refused us mid-job (a restart, a failover): an outage the next slot
            # recovers from, reported in one line; a traceback here would only bury the real failures.
            log.warning("job %s failed: database unavailable (%s)", job_id, type(exc.orig).__name__)
        else:
            log.exception("job %s failed", job_id)
        finish_run(factory, run_id, "failed", None, type(exc).__name__[:64])
        return "failed"
    outcome = "partial" if counts.get("failed", 0) else "success"
    finish_run(factory, run_id, outcome, counts)
    return outcome


def request_run(session: Session, job_id: str, requested_by: str, now: dt.datetime) -> JobRequest | None:
    """An operator's "run now": a row the scheduler's leader picks up within seconds; None when one for this
    job is still waiting (asking twice does not run it twice). Raises ValueError for an unknown job."""
    if job_id not in JOB_IDS:
        raise ValueError(f"unknown job {job_id!r}")
    waiting = session.scalar(
        select(JobRequest.id).where(JobRequest.job_id == job_id, JobRequest.picked_at.is_(None)).limit(1)
    )
    if waiting is not None:
        return None
    request = JobRequest(job_id=job_id, requested_by=requested_by, requested_at=now)
    session.add(request)
    session.flush()
    return request


def waiting_requests(session: Session) -> list[JobRequest]:
    return list(session.scalars(select(JobRequest).where(JobRequest.picked_at.is_(None)).order_by(JobRequest.id)))


def run_requests(
    factory: sessionmaker[Session], funcs: Mapping[str, JobFunc], runner: str | None = None
) -> list[tuple[str, str]]:
    """Runs every waiting request once (the leader calls this every second): claim it with one conditional
    UPDATE (so a second leader cannot run it too), record a run marked with the operator, link the two.
    Returns (job_id, outcome) per request run."""
    done: list[tuple[str, str]] = []
    with factory() as session:
        waiting = [(r.id, r.job_id, r.requested_by) for r in waiting_requests(session)]
    for request_id, job_id, requested_by in waiting:
        now = utcnow()
        with factory.begin() as session:
            claimed = session.execute(
                update(JobRequest)
                .where(JobRequest.id == request_id, JobRequest.picked_at.is_(None))
                .values(picked_at=now)
            )
            if not getattr(claimed, "rowcount", 0):
                continue
        func = funcs.get(job_id)
        if func is None:  # a job this scheduler does not know (an older version): picked, never run
            log.warning("run-now request %s names unknown job %s", request_id, job_id)
            continue
        # The run's slot is the request's own moment, off the job's grid; `requested_by` marks it as such.
        run_id = claim_run(factory, job_id, now, runner or runner_name(), requested_by)
        if run_id is None:
            continue
        with factory.begin() as session:
            session.execute(update(JobRequest).where(JobRequest.id == request_id).values(run_id=run_id))
        done.append((job_id, _run_claimed(factory, job_id, run_id, func)))
    return done


def recent_runs(session: Session, limit: int = 50, job_id: str | None = None) -> list[JobRun]:
    query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
    if job_id is not None:
        query = query.where(JobRun.job_id == job_id)
    return list(session.scalars(query))
