"""`pooler mcp token create|list|revoke`, `pooler mcp enable|disable [--operator NAME]`, `pooler mcp serve`.

The raw token is printed exactly once, alone on stdout, after the transaction committed. Access also needs
the instance gate (`pooler mcp enable`, the `mcp_enabled` setting) and the operator's gate
(`pooler mcp enable --operator NAME`); both are off by default.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pooler.audit import cli_actor
from pooler.cli.common import command, command_group, core_context, fmt_time, print_table, transaction
from pooler.services import mcp_access
from pooler.settings import set_setting


def _token_create(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        created = mcp_access.create_token(
            session, ctx.hasher, args.operator, args.label or f"{args.operator} MCP token", actor=cli_actor()
        )
        gate_on = mcp_access.operator_gate(session, created.operator_id)
    print(f"created MCP token {created.prefix} for operator {args.operator}; shown only once below", file=sys.stderr)
    if not gate_on:
        print(f"note: MCP is off for {args.operator}: `pooler mcp enable --operator {args.operator}`", file=sys.stderr)
    print(created.raw)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        rows = mcp_access.list_tokens(session, args.operator)
        if not rows:
            print("no MCP tokens yet: `pooler mcp token create --operator NAME`")
            return 0
        print_table(
            ["prefix", "operator", "label", "created", "last used", "revoked"],
            [
                [t.prefix, user, t.label, fmt_time(t.created_at), fmt_time(t.last_used_at), fmt_time(t.revoked_at)]
                for t, user in rows
            ],
        )
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        mcp_access.revoke_token(session, args.prefix, actor=cli_actor())
    print(f"revoked MCP token {args.prefix}", file=sys.stderr)
    return 0


def _gate(enabled: bool) -> Any:
    def run(args: argparse.Namespace) -> int:
        with core_context() as ctx, transaction(ctx) as session:
            if args.operator:
                mcp_access.set_operator_gate(session, args.operator, enabled, actor=cli_actor())
            else:
                set_setting(session, "mcp_enabled", enabled, actor=cli_actor())
        where = f"for operator {args.operator}" if args.operator else "instance-wide"
        print(f"MCP {'enabled' if enabled else 'disabled'} {where}", file=sys.stderr)
        return 0

    return run


def _serve(_args: argparse.Namespace) -> int:
    # The server is its own process package: exec it by module name (the core never imports it).
    os.execv(sys.executable, [sys.executable, "-m", "mcp_server"])


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "mcp", "MCP endpoint: tokens, gates, server")
    tokens = command_group(group, "token", "operator MCP tokens")
    p = command(tokens, _token_create, "create", help="create a token for an operator (printed once)")
    p.add_argument("--operator", required=True, metavar="NAME")
    p.add_argument("--label")
    p = command(tokens, _token_list, "list", help="list tokens (prefixes only)")
    p.add_argument("--operator", metavar="NAME")
    p = command(tokens, _token_revoke, "revoke", help="revoke a token")
    p.add_argument("prefix", help="the token's public prefix (mcp_xxxxxxxx)")
    for name, enabled in (("enable", True), ("disable", False)):
        p = command(group, _gate(enabled), name, help=f"{name} MCP instance-wide, or for one operator with --operator")
        p.add_argument("--operator", metavar="NAME")
    command(group, _serve, "serve", help="run the MCP server (127.0.0.1:POOLER_MCP_PORT)")
