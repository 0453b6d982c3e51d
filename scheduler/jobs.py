"""The job table: id, cadence and the core function each job runs. Jobs are plain, idempotent functions of
`(ctx, http, now)`; the scheduler only decides when, and which process, runs them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from pooler.alerts.evaluate import evaluate_alerts
from pooler.context import CoreContext
from pooler.services import housekeeping
from pooler.services.refresh import RefreshDeps, refresh_due_tokens, refresh_requested_pending
from pooler.services.usage_poll import PollDeps, poll_usage

JobRunner = Callable[[CoreContext, httpx.Client, dt.datetime], Mapping[str, int]]
JobDue = Callable[[CoreContext, dt.datetime], bool]


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    interval: dt.timedelta
    run: JobRunner
    due: JobDue | None = None
    """A cheap look before claiming a slot: a frequent job records a run only when it has work."""


def run_refresh_due_tokens(ctx: CoreContext, http: httpx.Client, now: dt.datetime) -> Mapping[str, int]:
    return refresh_due_tokens(RefreshDeps(ctx.session_factory, ctx.box, http), now)


def run_refresh_requested(ctx: CoreContext, http: httpx.Client, now: dt.datetime) -> Mapping[str, int]:
    return refresh_due_tokens(RefreshDeps(ctx.session_factory, ctx.box, http), now, requested_only=True)


def refresh_requested_due(ctx: CoreContext, now: dt.datetime) -> bool:
    with ctx.session_factory() as session:
        return refresh_requested_pending(session, now)


def run_poll_usage(ctx: CoreContext, http: httpx.Client, now: dt.datetime) -> Mapping[str, int]:
    # The job fires every minute; each account's own jittered cadence (default 5 min) decides if it is due.
    return poll_usage(PollDeps(ctx.session_factory, ctx.box, http), now)


def run_housekeeping(ctx: CoreContext, http: httpx.Client, now: dt.datetime) -> Mapping[str, int]:
    return housekeeping.run(ctx.session_factory, now)


def run_evaluate_alerts(ctx: CoreContext, http: httpx.Client, now: dt.datetime) -> Mapping[str, int]:
    # Shares the scheduler's HTTP client for webhook delivery (no redirects followed, bounded timeouts).
    return evaluate_alerts(ctx, now, http)


JOBS = (
    JobSpec("refresh_due_tokens", dt.timedelta(seconds=30), run_refresh_due_tokens),
    # An upstream 401 (the gateway flags the account) is refreshed within seconds, not at the next 30 s run:
    # when every token of a pool expires at once, the pool is back as soon as the refreshes land. Single
    # flight per account across processes: refresh_account's lease.
    JobSpec("refresh_requested", dt.timedelta(seconds=2), run_refresh_requested, refresh_requested_due),
    JobSpec("poll_usage", dt.timedelta(minutes=1), run_poll_usage),
    JobSpec("housekeeping", dt.timedelta(minutes=10), run_housekeeping),
    JobSpec("evaluate_alerts", dt.timedelta(minutes=1), run_evaluate_alerts),
)


def parse_interval_overrides(spec: str | None) -> dict[str, dt.timedelta]:
    """`POOLER_SCHEDULER_INTERVALS="refresh_due_tokens=2,poll_usage=2"` (seconds); tests use short cadences."""
    overrides: dict[str, dt.timedelta] = {}
    known = {job.job_id for job in JOBS}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, _, seconds = part.partition("=")
        name = name.strip()
        if name not in known:
            raise ValueError(f"POOLER_SCHEDULER_INTERVALS: unknown job {name!r}")
        value = float(seconds)
        if value <= 0:
            raise ValueError(f"POOLER_SCHEDULER_INTERVALS: {name} must be positive")
        overrides[name] = dt.timedelta(seconds=value)
    return overrides
