"""`pooler setting list | get | set | reset`: the DB-managed operational settings (pooler.settings' catalogue).

Secret settings are write-only here as everywhere: `list` and `get` say whether they are set, never the value,
and `set` reads a secret from stdin (or a prompt), never from argv, where `ps` and shell history would see it.
Heavy modules are imported inside handlers so `pooler --help` does not pay for them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from pooler.cli.common import command, command_group, core_context, print_table, transaction
from pooler.errors import PoolerError

JSON_PREVIEW = 60


def _shown(value: object, *, secret: bool, is_set: bool) -> str:
    if secret:
        return "(secret, set)" if is_set else "(secret, not set)"
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        return text if len(text) <= JSON_PREVIEW else text[: JSON_PREVIEW - 3] + "..."
    return "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _list(_args: argparse.Namespace) -> int:
    from pooler.settings import list_settings

    with core_context() as ctx, transaction(ctx) as session:
        views = list_settings(session)
        rows = [
            (
                v.definition.name,
                _shown(v.value, secret=v.definition.secret, is_set=v.is_set),
                "default" if v.is_default else "set",
                v.definition.description,
            )
            for v in views
        ]
    print_table(["name", "value", "source", "description"], rows)
    return 0


def _get(args: argparse.Namespace) -> int:
    from pooler.settings import definition, get_json_setting, get_setting, list_settings

    d = definition(args.name)
    with core_context() as ctx, transaction(ctx) as session:
        if d.secret:
            view = next(v for v in list_settings(session) if v.definition.name == d.name)
            text = _shown(None, secret=True, is_set=view.is_set)
        elif d.is_json:
            value = get_json_setting(session, d.name)
            text = "-" if value is None else json.dumps(value, indent=2, sort_keys=True)
        else:
            text = _shown(get_setting(session, d.name), secret=False, is_set=True)
    print(text)
    return 0


def _secret_value(name: str) -> str:
    value = getpass.getpass(f"{name}: ") if sys.stdin.isatty() else sys.stdin.read().rstrip("\r\n")
    if not value:
        raise PoolerError(f"no value for secret setting {name} on stdin")
    return value


def _set(args: argparse.Namespace) -> int:
    from pooler.audit import cli_actor
    from pooler.settings import definition, set_setting

    d = definition(args.name)
    if d.secret:
        if args.value not in (None, "-"):
            raise PoolerError(f"{d.name} is secret: pass it on stdin (`... | pooler setting set {d.name} -`)")
        value: str = _secret_value(d.name)
    elif args.value is None or args.value == "-":
        value = sys.stdin.read().strip()
    else:
        value = args.value
    with core_context() as ctx, transaction(ctx) as session:
        stored = set_setting(session, d.name, value, actor=cli_actor(), box=ctx.box)
    shown = "(secret, set)" if d.secret else _shown(stored, secret=False, is_set=True)
    print(f"{d.name} = {shown}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from pooler.audit import cli_actor
    from pooler.settings import definition, reset_setting

    d = definition(args.name)
    with core_context() as ctx, transaction(ctx) as session:
        reset_setting(session, d.name, actor=cli_actor())
    print(f"{d.name} reset to its default")
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "setting", "DB-managed operational settings (secret ones write-only)")
    command(group, _list, "list", help="every setting with its effective value (secrets: set or not)")
    p = command(group, _get, "get", help="one setting's effective value (never a secret's)")
    p.add_argument("name")
    p = command(group, _set, "set", help="store a value (secrets and '-' read stdin)")
    p.add_argument("name")
    p.add_argument("value", nargs="?", help="the value; '-' or omitted reads stdin (required for secrets)")
    p = command(group, _reset, "reset", help="delete the stored value (back to the default)")
    p.add_argument("name")
