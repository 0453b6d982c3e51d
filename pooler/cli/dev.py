"""`pooler dev seed`: fill a database with realistic fake data (see pooler.services.seed)."""

from __future__ import annotations

import argparse
from typing import Any

from pooler.cli.common import command, command_group, core_context, transaction
from pooler.errors import PoolerError


def _seed(args: argparse.Namespace) -> int:
    # Imported here: the seed pulls in the keys and pools services, which no other command needs at start-up.
    from sqlalchemy import func, select

    from pooler.models import Pool
    from pooler.services.seed import seed

    with core_context() as ctx, transaction(ctx) as session:
        if session.scalar(select(func.count()).select_from(Pool)) and not args.force:
            raise PoolerError("the database already has pools; seed an empty database (or pass --force)")
        result = seed(session, ctx.box, ctx.hasher, requests=args.requests)
    # Counts only: the fake tokens and raw keys stay in memory.
    print(
        f"seeded {len(result.pools)} pools, {len(result.accounts)} accounts, {len(result.raw_keys)} keys, "
        f"{result.requests} request logs"
    )
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "dev", "development helpers")
    p = command(group, _seed, "seed", help="fill the database with fake pools, accounts, keys, quota and logs")
    p.add_argument("--requests", type=int, default=600, help="request log rows to create (default 600)")
    p.add_argument("--force", action="store_true", help="seed even when pools exist (names must not clash)")
