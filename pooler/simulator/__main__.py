"""`python -m pooler.simulator [flags]`: the same as `pooler simulator [flags]`, without loading the other CLI
areas (their imports cost about a second, which adds up when tests start many simulators)."""

from __future__ import annotations

import argparse
import sys

from pooler.cli.simulator import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pooler.simulator")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulator", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
