"""Helpers shared by CLI command modules: open the core context, run one transaction, print tables.

Every command runs in exactly one transaction (`transaction(ctx)`), so a failure leaves nothing half-written.
Database and configuration failures become PoolerError with a one-line, secret-free message; `pooler.cli.main`
prints it on stderr and exits 1, without a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pooler.audit import cli_actor
from pooler.config import Config, load_config
from pooler.context import CoreContext, open_context
from pooler.errors import ConfigError, PoolerError

Handler = Callable[[argparse.Namespace], int | None]

T = TypeVar("T")


def config_error(exc: ConfigError) -> PoolerError:
    return PoolerError("invalid configuration: " + "; ".join(exc.problems))


def load_cli_config() -> Config:
    try:
        return load_config()
    except ConfigError as exc:
        raise config_error(exc) from None


def database_error(exc: SQLAlchemyError) -> PoolerError:
    """One safe line: the driver's first message line, never the statement or its parameters."""
    orig = getattr(exc, "orig", None)
    first = (str(orig) if orig is not None else type(exc).__name__).strip().splitlines()
    message = first[0][:300] if first else type(exc).__name__
    lowered = message.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return PoolerError(f"the database schema is missing or out of date ({message}): run `pooler db upgrade`")
    return PoolerError(f"database error: {message}")


@contextmanager
def core_context() -> Iterator[CoreContext]:
    """Config + keyring + engine; ConfigError problems are reported on one line. Disposed on exit."""
    try:
        # hide_parameters: a driver error must never echo bound values (ciphertext, hashes) into a message.
        ctx = open_context(load_cli_config(), hide_parameters=True)
    except ConfigError as exc:
        raise config_error(exc) from None
    try:
        yield ctx
    finally:
        ctx.dispose()


@contextmanager
def transaction(ctx: CoreContext) -> Iterator[Session]:
    """One transaction per command: committed when the block ends, rolled back on any error."""
    try:
        with ctx.session_factory.begin() as session:
            yield session
    except SQLAlchemyError as exc:
        raise database_error(exc) from None


def command(group: Any, func: Handler, name: str, **options: Any) -> Any:
    """Adds the command `name` (argparse `add_parser` options) to `group`, run by `func`; returns its parser
    for the command's arguments."""
    parser = group.add_parser(name, **options)
    parser.set_defaults(func=func)
    return parser


def change_command(change: Callable[..., T], ref: str, describe: Callable[[T], str]) -> Handler:
    """A command that applies one service change to the object its argument `ref` names, as the CLI actor, and
    prints `describe` of the result once the transaction has committed."""

    def handler(args: argparse.Namespace) -> int:
        with core_context() as ctx, transaction(ctx) as session:
            message = describe(change(session, getattr(args, ref), actor=cli_actor()))
        print(message)
        return 0

    return handler


def command_group(subparsers: Any, name: str, help_text: str) -> Any:
    """The sub-command group `pooler NAME ...`, created on first use and shared by every module that extends it
    (e.g. the scheduler adds `account refresh` to the `account` group created by pooler.cli.accounts)."""
    existing = subparsers.choices.get(name)
    if existing is not None:
        return existing.pooler_group
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    group = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    parser.pooler_group = group

    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
    return group


def fmt_time(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return fmt_time(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def print_rows(rows: Sequence[object], empty: str, columns: Mapping[str, str]) -> None:
    """A table of `rows` with one column per header -> attribute path (`pool.name`), or `empty` when none."""
    if not rows:
        print(empty)
        return
    getters = [attrgetter(path) for path in columns.values()]
    print_table(list(columns), [[get(row) for get in getters] for row in rows])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[fmt_value(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def parse_utc(text: str) -> dt.datetime:
    """ISO 8601 date or date-time; naive values are taken as UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PoolerError(f"not an ISO 8601 date/time: {text[:40]!r}") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
