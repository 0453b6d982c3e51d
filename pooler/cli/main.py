"""`pooler` console script: one argparse tree, each area's commands in its own module.

Errors the core raises on purpose (PoolerError) become one line on stderr and exit code 1; no traceback.
Process packages (extproc, admin_flask, scheduler) are started by module name, never imported here, so the
core keeps depending on none of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pooler.errors import PoolerError

# Each module exposes `register(subparsers)`; a parser sets `func(args) -> int | None` as its handler.
COMMAND_MODULES = [
    "pooler.cli.db",
    "pooler.cli.pools",
    "pooler.cli.keys",
    "pooler.cli.accounts",
    "pooler.cli.secrets",
    "pooler.cli.status",
    "pooler.cli.simulator",
    "pooler.cli.gateway",
    "pooler.cli.scheduler",
    "pooler.cli.admin",
    "pooler.cli.dev",
    "pooler.cli.mcp",
    "pooler.cli.settings",
    "pooler.cli.metrics",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pooler", description="Codex Pooler: pool ChatGPT/Codex accounts behind Envoy"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        result = args.func(args)
    except PoolerError as exc:
        print(f"pooler: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
