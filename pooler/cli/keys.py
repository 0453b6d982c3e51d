"""`pooler key create | list | pause | resume | revoke | rotate`.

The raw key is printed exactly once, alone on stdout (so `KEY=$(pooler key create ...)` works); everything else
goes to stderr. It is printed only after the transaction committed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from pooler.audit import cli_actor
from pooler.cli.common import change_command, command, command_group, core_context, parse_utc, print_rows, transaction
from pooler.errors import PoolerError
from pooler.models import PoolKey, utcnow
from pooler.services import keys


def _expiry(args: argparse.Namespace) -> dt.datetime | None:
    if args.expires_at and args.expires_in_days is not None:
        raise PoolerError("give either --expires-at or --expires-in-days, not both")
    if args.expires_at:
        return parse_utc(args.expires_at)
    if args.expires_in_days is not None:
        if args.expires_in_days <= 0:
            raise PoolerError("--expires-in-days must be positive")
        return utcnow() + dt.timedelta(days=args.expires_in_days)
    return None


def _create(args: argparse.Namespace) -> int:
    expires_at = _expiry(args)
    with core_context() as ctx, transaction(ctx) as session:
        created = keys.create_key(
            session,
            ctx.hasher,
            pool=args.pool,
            label=args.label,
            expires_at=expires_at,
            allowed_models=args.model,
            requests_per_minute=args.rpm,
            tokens_per_day=args.tokens_per_day,
            budgets=[keys.parse_budget(b) for b in args.budget or []],
            share=keys.KeyShareSpec(args.share_percent, args.share_team, args.share_pacing),
            actor=cli_actor(),
        )
        note = f"created key {created.key.prefix} ({created.key.label}) for pool {args.pool}"
    print(note + "; the key below is shown only once", file=sys.stderr)
    print(created.raw)
    return 0


BUDGET_HELP = (
    "PERIOD:UNIT:HARD[:SOFT] (repeatable): day|week|month, tokens|usd, in the pool's time zone; "
    "e.g. day:tokens:200000, month:usd:50:40, week:usd::20 (soft only)"
)


def _budgets(args: argparse.Namespace) -> int:
    budgets = [keys.parse_budget(b) for b in args.budget or []]
    with core_context() as ctx, transaction(ctx) as session:
        key = keys.set_budgets(session, args.prefix, budgets, actor=cli_actor())
        shown = ", ".join(keys.budget_text(b) for b in keys.key_budgets(key)) or "none"
        message = f"key {key.prefix} ({key.label}) budgets: {shown}"
    print(message)
    return 0


def _share_options(p: Any) -> None:
    p.add_argument(
        "--share-percent", type=float, metavar="P", help="most of the pool's 5-hour and weekly capacity, in percent"
    )
    p.add_argument("--share-team", metavar="TEAM", help="keys of the pool with the same team share one measure")
    p.add_argument("--share-pacing", action="store_true", help="spread the weekly share evenly over the week's days")


def _share(args: argparse.Namespace) -> int:
    spec = keys.KeyShareSpec(args.share_percent, args.share_team, args.share_pacing)
    with core_context() as ctx, transaction(ctx) as session:
        key = keys.set_share(session, args.prefix, spec, actor=cli_actor())
        message = f"key {key.prefix} ({key.label}) share: {keys.key_share(key).text() or 'none'}"
    print(message)
    return 0


def _list(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        print_rows(
            keys.list_keys(session, args.pool),
            "no keys yet: create one with `pooler key create --pool P --label L`",
            {
                "prefix": "prefix",
                "pool": "pool.name",
                "label": "label",
                "status": "status",
                "expires": "expires_at",
                "models": "allowed_models",
                "rpm": "requests_per_minute",
                "tokens/day": "tokens_per_day",
                "last used": "last_used_at",
            },
        )
    return 0


def _key_status(key: PoolKey) -> str:
    return f"key {key.prefix} ({key.label}) is {key.status}"


def _rotate(args: argparse.Namespace) -> int:
    with core_context() as ctx, transaction(ctx) as session:
        created = keys.rotate_key(session, ctx.hasher, args.prefix, actor=cli_actor())
        note = f"rotated key {created.key.label}: new prefix {created.key.prefix}; the old key no longer works"
    print(note + "; the key below is shown only once", file=sys.stderr)
    print(created.raw)
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "key", "Pool API keys")
    p = command(group, _create, "create", help="create a key (printed once)")
    p.add_argument("--pool", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--expires-at", metavar="WHEN", help="ISO 8601 date/time (UTC when no offset)")
    p.add_argument("--expires-in-days", type=int, metavar="N")
    p.add_argument("--model", action="append", metavar="MODEL", help="allow only these models (repeatable)")
    p.add_argument("--rpm", type=int, metavar="N", help="requests per minute limit")
    p.add_argument("--tokens-per-day", type=int, metavar="N", help="tokens per day limit")
    p.add_argument("--budget", action="append", metavar="SPEC", help=BUDGET_HELP)
    _share_options(p)
    p = command(
        group, _share, "share", help="set a key's quota share of the pool's capacity (no --share-percent: none)"
    )
    p.add_argument("prefix", help="the key's public prefix (cpk_xxxxxxxx)")
    _share_options(p)
    p = command(group, _budgets, "budgets", help="replace a key's budgets (none given: remove them)")
    p.add_argument("prefix", help="the key's public prefix (cpk_xxxxxxxx)")
    p.add_argument("--budget", action="append", metavar="SPEC", help=BUDGET_HELP)
    p = command(group, _list, "list", help="list keys (prefixes only)")
    p.add_argument("--pool")
    for name, change, text in (
        ("pause", keys.pause_key, "pause a key (requests get 403)"),
        ("resume", keys.resume_key, "resume a paused key"),
        ("revoke", keys.revoke_key, "revoke a key for good"),
    ):
        p = command(group, change_command(change, "prefix", _key_status), name, help=text)
        p.add_argument("prefix", help="the key's public prefix (cpk_xxxxxxxx)")
    p = command(group, _rotate, "rotate", help="replace a key's secret and prefix (printed once)")
    p.add_argument("prefix")
