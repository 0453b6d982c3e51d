"""`pooler account import --pool P [--replace] FILE|-` and `pooler account list [--pool P]`.

The file is read as bytes (at most 64 KiB + 1, so an oversized input is rejected without reading it all) and
handed to the importer; its contents are never printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pooler.audit import cli_actor
from pooler.authjson import MAX_AUTH_JSON_BYTES
from pooler.cli.common import command, command_group, core_context, fmt_time, print_rows, transaction
from pooler.errors import PoolerError
from pooler.services import accounts


def read_input(name: str) -> bytes:
    limit = MAX_AUTH_JSON_BYTES + 1
    if name == "-":
        return sys.stdin.buffer.read(limit)
    try:
        with Path(name).open("rb") as fh:
            return fh.read(limit)
    except OSError as exc:
        raise PoolerError(f"cannot read {name}: {exc.strerror or type(exc).__name__}") from None


def _import(args: argparse.Namespace) -> int:
    data = read_input(args.file)
    with core_context() as ctx, transaction(ctx) as session:
        result = accounts.import_auth_json(
            session, ctx.box, pool=args.pool, data=data, actor=cli_actor(), replace=args.replace, label=args.label
        )
    what = "imported new account" if result.created else f"updated credentials (epoch {result.credential_epoch}) of"
    print(
        f"{what} #{result.account_id} {result.label} (plan {result.plan_type or 'unknown'}) in pool "
        f"{result.pool_name}; state {result.state}, access token expires {fmt_time(result.access_token_expires_at)}"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        print_rows(
            accounts.list_accounts(session, args.pool, include_deleted=args.all),
            "no accounts yet: import one with `pooler account import --pool P auth.json`",
            {
                "id": "id",
                "label": "label",
                "plan": "plan_type",
                "state": "state",
                "reason": "state_reason",
                "epoch": "credential_epoch",
                "token expires": "access_token_expires_at",
                "pools": "pools",
                "chatgpt account": "chatgpt_account_id",
            },
        )
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "account", "upstream ChatGPT/Codex accounts")
    p = command(group, _import, "import", help="import a Codex auth.json into a pool")
    p.add_argument("--pool", required=True)
    p.add_argument("--replace", action="store_true", help="update the credentials of an account already in the pool")
    p.add_argument("--label", help="display label (default: email local part or account id)")
    p.add_argument("file", metavar="FILE", help="path to auth.json, or - for stdin")
    p = command(group, _list, "list", help="list accounts")
    p.add_argument("--pool")
    p.add_argument("--all", action="store_true", help="include deleted accounts")
