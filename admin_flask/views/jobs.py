"""Scheduler job runs and each job's next expected run.

The admin does not import the scheduler process package: a job's interval is inferred from the spacing of its
two latest slots (slots are aligned to the interval), so "next" is known once a job has run twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import select

from admin_flask import security
from admin_flask.db import get_db
from pooler.models import JobRun
from pooler.services.jobs import recent_runs

PREFIX = "/jobs"
bp = Blueprint("jobs", __name__)
bp.before_request(security.require_login)


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    last: JobRun
    interval: dt.timedelta | None
    next_at: dt.datetime | None


def summaries() -> list[JobSummary]:
    db = get_db()
    job_ids = sorted(set(db.scalars(select(JobRun.job_id).distinct())))
    result = []
    for job_id in job_ids:
        latest = list(db.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.slot.desc()).limit(2)))
        interval = latest[0].slot - latest[1].slot if len(latest) == 2 else None
        result.append(JobSummary(job_id, latest[0], interval, latest[0].slot + interval if interval else None))
    return result


@bp.route("/")
def index() -> Any:
    job_id = request.args.get("job") or None
    return render_template(
        "jobs/index.html", jobs=summaries(), runs=recent_runs(get_db(), limit=100, job_id=job_id), job_id=job_id
    )
