"""`pooler metrics token create|clear`: the bearer token of `/metrics`.

Only a keyed hash is stored (pooler.metrics_token, setting `metrics_token_hash`); the raw token is printed
exactly once, alone on stdout, after the transaction committed, so a failed commit never shows a token that
does not work. The gateway port's `/metrics` needs it always; `clear` reopens only the ext_proc's own socket
and POOLER_METRICS_LISTEN (the gateway port then refuses every scrape).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pooler.cli.common import command, command_group, core_context, transaction


def _token_create(_args: argparse.Namespace) -> int:
    from pooler import metrics_token
    from pooler.audit import cli_actor

    with core_context() as ctx, transaction(ctx) as session:
        raw = metrics_token.create_token(session, ctx.hasher, actor=cli_actor())
    # Guidance on stderr so `TOKEN=$(pooler metrics token create)` captures the token alone.
    print(
        "created the /metrics token (replaces any previous one); shown only once below. "
        "Scrapers send `Authorization: Bearer <token>`",
        file=sys.stderr,
    )
    print(raw)
    return 0


def _token_clear(_args: argparse.Namespace) -> int:
    from pooler import metrics_token
    from pooler.audit import cli_actor

    with core_context() as ctx, transaction(ctx) as session:
        metrics_token.clear_token(session, actor=cli_actor())
    print(
        "cleared the /metrics token: the ext_proc's own socket and POOLER_METRICS_LISTEN are open again; "
        "/metrics on the gateway port now refuses every scrape",
        file=sys.stderr,
    )
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "metrics", "the gateway's /metrics endpoint")
    tokens = command_group(group, "token", "the /metrics bearer token (required on the gateway port)")
    command(tokens, _token_create, "create", help="create (or replace) the token; printed once")
    command(tokens, _token_clear, "clear", help="remove the token: the gateway port refuses every scrape")
