"""`pooler admin serve | create-operator | sign-out`. The admin process is started by module name, never imported.

The operators service is imported inside the handler: it computes an argon2 hash at import (its timing dummy),
which every other `pooler` command would otherwise pay for (~0.3 s).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from pooler.cli.common import command, command_group, core_context, transaction
from pooler.errors import PoolerError
from pooler.states import OperatorRole


def _serve(_args: argparse.Namespace) -> int:
    # exec: the admin's gunicorn master replaces this process, so signals reach it directly.
    os.execv(sys.executable, [sys.executable, "-m", "admin_flask"])
    return 0  # pragma: no cover


def _create_operator(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from pooler import audit
    from pooler.audit import cli_actor
    from pooler.models import Pool
    from pooler.services import operators as ops

    password = os.environ.get("POOLER_OPERATOR_PASSWORD") if args.password_env else None
    if args.password_env and not password:
        raise PoolerError("--password-env given but POOLER_OPERATOR_PASSWORD is not set")
    if password is None:
        try:
            password = getpass.getpass("password: ")
            repeat = getpass.getpass("repeat: ")
        except EOFError:
            # No terminal and nothing on stdin: one line, not a traceback.
            raise PoolerError("no password given (use --password-env in scripts)") from None
        if repeat != password:
            raise PoolerError("passwords differ")
    actor = cli_actor()
    with core_context() as ctx, transaction(ctx) as session:
        pool_ids = []
        for name in args.pool or []:
            pool_id = session.scalar(select(Pool.id).where(Pool.name == name))
            if pool_id is None:
                raise PoolerError(f"pool {name!r} does not exist")
            pool_ids.append(pool_id)
        operator = ops.create_operator(
            session, username=args.username, password=password, role=args.role, pool_ids=pool_ids
        )
        audit.record(
            session,
            actor,
            action="operator.create",
            target_type="operator",
            target_id=operator.id,
            target_label=operator.username,
            details={"role": operator.role, "pools": args.pool or []},
        )
        username, role = operator.username, operator.role
    print(f"created operator {username} ({role})")
    return 0


def _sign_out(args: argparse.Namespace) -> int:
    """Ends every admin session of an operator: for when a browser is lost and nobody can sign in to do it."""
    from sqlalchemy import select

    from pooler import audit
    from pooler.errors import NotFoundError
    from pooler.models import Operator
    from pooler.services import admin_sessions

    actor = audit.cli_actor()
    with core_context() as ctx, transaction(ctx) as session:
        operator = session.scalar(select(Operator).where(Operator.username == args.username.strip().lower()))
        if operator is None:
            raise NotFoundError(f"operator {args.username!r} does not exist")
        revoked = admin_sessions.revoke_operator(session, operator.id)
        audit.record(
            session,
            actor,
            action="operator.sessions_revoke",
            target_type="operator",
            target_id=operator.id,
            target_label=operator.username,
            details={"sessions_revoked": revoked},
        )
        username = operator.username
    print(f"signed out {username}: {revoked} admin session(s) ended")
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "admin", "the operator admin web app")
    command(group, _serve, "serve", help="run the admin (gunicorn on 127.0.0.1:POOLER_ADMIN_PORT)")
    p = command(group, _create_operator, "create-operator", help="create an operator (for scripted setups)")
    p.add_argument("username")
    p.add_argument("--role", default=OperatorRole.OWNER.value, choices=[r.value for r in OperatorRole])
    p.add_argument("--pool", action="append", metavar="POOL", help="pools of an admin (repeatable)")
    p.add_argument(
        "--password-env", action="store_true", help="read the password from POOLER_OPERATOR_PASSWORD (no prompt)"
    )
    p = command(group, _sign_out, "sign-out", help="end every admin session of an operator (all their browsers)")
    p.add_argument("username")
