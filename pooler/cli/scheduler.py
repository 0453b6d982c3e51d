"""`pooler scheduler`, `pooler account refresh|poll ID` and `pooler jobs`.

`pooler scheduler` execs `python -m scheduler` (the core never imports the scheduler package). The account
commands run the core services directly, in this process: a refresh still takes the account's lease, so it is
safe while a scheduler runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pooler.audit import cli_actor
from pooler.cli.common import command, command_group, core_context, print_table
from pooler.services.jobs import recent_runs
from pooler.services.refresh import Outcome, RefreshDeps, make_http_client, refresh_account
from pooler.services.usage_poll import PollDeps, PollOutcome, poll_account


def _scheduler(_args: argparse.Namespace) -> int:
    argv = [sys.executable, "-m", "scheduler"]
    os.execv(argv[0], argv)
    return 0  # not reached


def _refresh(args: argparse.Namespace) -> int:
    with core_context() as ctx, make_http_client() as http:
        deps = RefreshDeps(ctx.session_factory, ctx.box, http, actor=cli_actor())
        result = refresh_account(deps, args.id)
    detail = f" ({result.code})" if result.code else ""
    until = f", no token call before {result.not_before:%Y-%m-%d %H:%M:%S} UTC" if result.not_before else ""
    print(f"account #{args.id}: {result.outcome}{detail}, credential epoch {result.epoch}{until}")
    return 0 if result.outcome in (Outcome.REFRESHED, Outcome.JOINED) else 1


def _poll(args: argparse.Namespace) -> int:
    with core_context() as ctx, make_http_client() as http:
        deps = PollDeps(ctx.session_factory, ctx.box, http, actor=cli_actor())
        result = poll_account(deps, args.id, force=True)
    detail = f" ({result.code})" if result.code else ""
    print(f"account #{args.id}: usage poll {result.outcome}{detail}; {result.windows} window(s); state {result.state}")
    return 0 if result.outcome == PollOutcome.OK else 1


def _jobs(args: argparse.Namespace) -> int:
    with core_context() as ctx, ctx.session_factory() as session:
        runs = recent_runs(session, args.limit, args.job)
        if not runs:
            print("no job runs yet: is a scheduler running? (`pooler scheduler`)")
            return 0
        print_table(
            ["job", "slot", "started", "seconds", "outcome", "error", "counts", "runner"],
            [
                [
                    r.job_id,
                    r.slot.strftime("%Y-%m-%d %H:%M:%S"),
                    r.started_at.strftime("%H:%M:%S"),
                    "-" if r.finished_at is None else f"{(r.finished_at - r.started_at).total_seconds():.2f}",
                    r.outcome,
                    r.error_code,
                    " ".join(f"{k}={v}" for k, v in (r.counts or {}).items() if v) or "-",
                    r.runner,
                ]
                for r in runs
            ],
        )
    return 0


def register(subparsers: Any) -> None:
    command(subparsers, _scheduler, "scheduler", help="run the scheduler (token refresh, usage polling, housekeeping)")

    group = command_group(subparsers, "account", "upstream ChatGPT/Codex accounts")
    p = command(group, _refresh, "refresh", help="refresh an account's tokens now (single-flight with the scheduler)")
    p.add_argument("id", type=int, metavar="ID")
    p = command(group, _poll, "poll", help="poll an account's usage now and update its quota state")
    p.add_argument("id", type=int, metavar="ID")

    p = command(subparsers, _jobs, "jobs", help="recent scheduler job runs")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--job", help="only this job id")
