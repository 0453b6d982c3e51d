"""`pooler pool create | list | show | pause | resume`."""

from __future__ import annotations

import argparse
from typing import Any

from pooler.audit import cli_actor
from pooler.cli.common import (
    change_command,
    command,
    command_group,
    core_context,
    fmt_time,
    print_rows,
    print_table,
    transaction,
)
from pooler.models import Pool
from pooler.selection import DEFAULT_STRATEGY, STRATEGIES
from pooler.services import pools


def _create(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        pool = pools.create_pool(
            session,
            name=args.name,
            label=args.label,
            strategy=args.strategy,
            sticky_ttl_seconds=args.sticky_ttl,
            max_attempts=args.max_attempts,
            allowed_models=args.model,
            time_zone=args.time_zone,
            actor=cli_actor(),
        )
        message = (
            f"created pool {pool.name} (strategy {pool.settings.strategy}, "
            f"sticky TTL {pool.settings.sticky_ttl_seconds}s)"
        )
    # Printed only after the commit succeeded.
    print(message)
    return 0


def _list(_args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        print_rows(
            pools.list_pools(session),
            "no pools yet: create one with `pooler pool create NAME`",
            {
                "name": "name",
                "status": "status",
                "strategy": "strategy",
                "accounts": "accounts",
                "ready": "ready_accounts",
                "active keys": "active_keys",
                "label": "label",
            },
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        detail = pools.show_pool(session, args.name)
        pool, settings = detail.pool, detail.settings
        print(f"pool:        {pool.name} ({pool.label})")
        print(f"status:      {pool.status}")
        print(
            f"strategy:    {settings.strategy}, sticky TTL {settings.sticky_ttl_seconds}s, "
            f"max attempts {settings.max_attempts}"
        )
        print(f"models:      {','.join(settings.allowed_models) if settings.allowed_models else 'all'}")
        print(f"created:     {fmt_time(pool.created_at)}")
        states = ", ".join(f"{k} {v}" for k, v in sorted(detail.state_counts.items())) or "none"
        print(f"accounts:    {len(detail.assignments)} ({detail.ready_accounts} ready; {states})")
        keys = ", ".join(f"{k} {v}" for k, v in sorted(detail.keys_by_status.items())) or "none"
        print(f"keys:        {keys}")
        if detail.assignments:
            print()
            print_table(
                ["id", "label", "plan", "state", "assignment", "priority", "ready"],
                [
                    [
                        a.account_id,
                        a.label,
                        a.plan_type,
                        a.state,
                        a.assignment_status,
                        a.priority,
                        "yes" if a.ready else "no",
                    ]
                    for a in detail.assignments
                ],
            )
    return 0


def _pool_status(pool: Pool) -> str:
    return f"pool {pool.name} is {pool.status}"


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "pool", "pools of upstream accounts")
    p = command(group, _create, "create", help="create a pool")
    p.add_argument("name", help="slug: lowercase letters, digits, '-' or '_'")
    p.add_argument("--label", help="display name (default: the name)")
    p.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY.name.value,
        choices=list(STRATEGIES),
        help="; ".join(f"{name}: {s.label}" for name, s in STRATEGIES.items()) + f" (default {DEFAULT_STRATEGY.name})",
    )
    p.add_argument("--sticky-ttl", type=int, metavar="SECONDS", help="sticky session TTL (default: setting)")
    p.add_argument("--max-attempts", type=int, default=3, help="upstream attempts per request (default 3)")
    p.add_argument("--model", action="append", metavar="MODEL", help="allow only these models (repeatable)")
    p.add_argument(
        "--time-zone", default="UTC", metavar="ZONE", help="IANA zone where key budget periods start (default UTC)"
    )
    command(group, _list, "list", help="list pools")
    p = command(group, _show, "show", help="a pool's settings, accounts and readiness")
    p.add_argument("name")
    for name, change, text in (
        ("pause", pools.pause_pool, "stop serving requests from a pool"),
        ("resume", pools.resume_pool, "serve requests from a paused pool again"),
    ):
        p = command(group, change_command(change, "name", _pool_status), name, help=text)
        p.add_argument("name")
