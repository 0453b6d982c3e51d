"""Wiring of the scheduler process: context, leader election, APScheduler jobs, signals, the ready line.

Every process schedules every job on the same epoch-aligned grid, but a fired job does nothing unless this
process is the leader. The slot (the grid time of the fire) is claimed in `job_runs` before the job runs, so
even a brief overlap of two leaders (a lock lost and re-taken within one tick) cannot run a slot twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from pooler.context import CoreContext, open_context
from pooler.errors import PoolerError
from pooler.models import utcnow
from pooler.services import jobs as job_runs
from pooler.services.refresh import make_http_client
from scheduler.jobs import JOBS, JobSpec, parse_interval_overrides
from scheduler.leader import Leader, make_leader

log = logging.getLogger("scheduler")

READY_LINE = "pooler-scheduler ready"
LEADER_LINE = "pooler-scheduler leader"
STANDBY_LINE = "pooler-scheduler standby"
TICK_SECONDS = 0.5
"""How often leadership is checked: a standby takes over within about one tick of the leader's lock going."""
GRID_ORIGIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
REQUEST_POLL_SECONDS = 1.0
"""How often the leader looks for run-now requests: one indexed query a second, a click answered within ~1 s."""


class JobFirer:
    """What APScheduler calls: runs the job for its slot if this process leads; never raises."""

    def __init__(self, ctx: CoreContext, http: httpx.Client, leader: Leader, runner: str) -> None:
        self.ctx, self.http, self.leader, self.runner = ctx, http, leader, runner
        # A run-now and a scheduled fire of the same job never overlap in this process.
        self.locks = {spec.job_id: threading.Lock() for spec in JOBS}

    def _func(self, spec: JobSpec) -> job_runs.JobFunc:
        def run(now: dt.datetime) -> Mapping[str, int]:
            with self.locks[spec.job_id]:
                return spec.run(self.ctx, self.http, now)

        return run

    def fire(self, spec: JobSpec, interval_seconds: float) -> None:
        if not self.leader.is_leader:
            return
        if spec.due is not None:
            try:
                if not spec.due(self.ctx, utcnow()):
                    return
            except Exception as exc:  # the database may be down; the next slot looks again
                log.warning("job %s: due check failed: %s", spec.job_id, type(exc).__name__)
                return
        slot = job_runs.floor_slot(utcnow(), dt.timedelta(seconds=interval_seconds))
        try:
            outcome = job_runs.execute(self.ctx.session_factory, spec.job_id, slot, self._func(spec), self.runner)
        except Exception as exc:  # the database may be down; the next slot tries again
            log.warning("job %s slot %s not run: %s", spec.job_id, slot.isoformat(), type(exc).__name__)
            return
        if outcome is not None:
            log.info("job %s slot %s: %s", spec.job_id, slot.isoformat(), outcome)

    def run_requested(self) -> None:
        """Operators' run-now requests (rows the admin inserts), polled every REQUEST_POLL_SECONDS."""
        if not self.leader.is_leader:
            return
        try:
            done = job_runs.run_requests(
                self.ctx.session_factory, {spec.job_id: self._func(spec) for spec in JOBS}, self.runner
            )
        except Exception as exc:  # the database may be down; the next poll tries again
            log.warning("run-now requests not polled: %s", type(exc).__name__)
            return
        for job_id, outcome in done:
            log.info("job %s run now: %s", job_id, outcome)


def build_scheduler(firer: JobFirer, overrides: dict[str, dt.timedelta]) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    for spec in JOBS:
        seconds = overrides.get(spec.job_id, spec.interval).total_seconds()
        scheduler.add_job(
            firer.fire,
            IntervalTrigger(seconds=seconds, start_date=GRID_ORIGIN, timezone=dt.UTC),
            args=(spec, seconds),
            id=spec.job_id,
            name=spec.job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
        )
    scheduler.add_job(
        firer.run_requested,
        IntervalTrigger(seconds=REQUEST_POLL_SECONDS, timezone=dt.UTC),
        id="run_requested",
        name="run_requested",
        max_instances=1,
        coalesce=True,
    )
    return scheduler


def main(argv: Sequence[str] | None = None) -> int:
    try:
        ctx = open_context()
        overrides = parse_interval_overrides(os.environ.get("POOLER_SCHEDULER_INTERVALS"))
    except (PoolerError, ValueError) as exc:
        print(f"pooler-scheduler: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=ctx.config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # request lines would carry URLs only, but keep quiet
    leader = make_leader(ctx.config.database_url)
    runner = job_runs.runner_name()
    http = make_http_client()
    scheduler = build_scheduler(JobFirer(ctx, http, leader, runner), overrides)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler.start()
    leading = leader.tick()
    print(READY_LINE, runner, flush=True)
    print(LEADER_LINE if leading else STANDBY_LINE, runner, flush=True)
    try:
        while not stop.wait(TICK_SECONDS):
            now_leading = leader.tick()
            if now_leading != leading:
                leading = now_leading
                print(LEADER_LINE if leading else STANDBY_LINE, runner, flush=True)
    finally:
        # Let a running job finish (bounded by HTTP timeouts), then give the lock up for the standby.
        scheduler.shutdown(wait=True)
        leader.release()
        http.close()
        ctx.dispose()
    print("pooler-scheduler stopped", runner, flush=True)
    return 0
