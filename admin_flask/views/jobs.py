"""Scheduler job runs, what each did (a run that moved accounts to reauth_required is a warning), each job's
next expected run, and "run now" for owners.

The admin does not import the scheduler process package: a job's interval is inferred from the spacing of its
two latest scheduled slots (slots are aligned to the interval), so "next" is known once a job has run twice.
Run now inserts a `job_requests` row; the scheduler's leader polls for it every second (pooler.services.jobs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from admin_flask import auditing, security
from admin_flask.db import get_db
from admin_flask.forms import ActionForm
from pooler.attention import JobStatus, job_status
from pooler.models import JobRequest, JobRun, utcnow
from pooler.services import jobs as job_service
from pooler.services.jobs import recent_runs

PREFIX = "/jobs"
bp = Blueprint("jobs", __name__)


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    last: JobRun | None
    status: JobStatus | None
    interval: dt.timedelta | None
    next_at: dt.datetime | None
    waiting: JobRequest | None
    """A run-now request the scheduler has not picked up yet."""


def summaries() -> list[JobSummary]:
    db = get_db()
    waiting = {r.job_id: r for r in job_service.waiting_requests(db)}
    job_ids = sorted(set(db.scalars(select(JobRun.job_id).distinct())) | set(job_service.JOB_IDS))
    result = []
    for job_id in job_ids:
        last = db.scalar(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.started_at.desc()).limit(1))
        scheduled = list(
            db.scalars(
                select(JobRun)
                .where(JobRun.job_id == job_id, JobRun.requested_by.is_(None))
                .order_by(JobRun.slot.desc())
                .limit(2)
            )
        )
        interval = scheduled[0].slot - scheduled[1].slot if len(scheduled) == 2 else None
        status = job_status(last.outcome, last.counts, last.error_code) if last else None
        next_at = scheduled[0].slot + interval if interval else None
        result.append(JobSummary(job_id, last, status, interval, next_at, waiting.get(job_id)))
    return result


@bp.route("/")
def index() -> Any:
    job_id = request.args.get("job") or None
    runs = recent_runs(get_db(), limit=100, job_id=job_id)
    return render_template(
        "jobs/index.html",
        jobs=summaries(),
        runs=[(r, job_status(r.outcome, r.counts, r.error_code)) for r in runs],
        job_id=job_id,
        action=ActionForm(),
    )


@bp.route("/<job_id>/run", methods=["POST"])
@security.owner_required
def run_now(job_id: str) -> Any:
    """Jobs act on every pool, so only owners may run one out of turn."""
    if not ActionForm().validate_on_submit():
        abort(400)
    if job_id not in job_service.JOB_IDS:
        abort(404)
    db = get_db()
    me = security.current()
    queued = job_service.request_run(db, job_id, me.username, utcnow())
    if queued is None:
        db.rollback()
        flash(f"{job_id} is already waiting to run.", "info")
    else:
        auditing.record("job.run_requested", "job", job_id, job_id, details={"request": queued.id})
        db.commit()
        flash(f"{job_id} requested: the scheduler runs it within seconds.", "ok")
    return redirect(url_for("jobs.index", _anchor=f"job-{job_id}"))
