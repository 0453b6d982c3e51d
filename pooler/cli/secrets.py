"""`pooler secrets init` (local dev keyring) and `pooler secrets rotate` (re-encrypt to the current key)."""

from __future__ import annotations

import argparse
from typing import Any

from pooler.audit import cli_actor
from pooler.cli.common import command, command_group, core_context, load_cli_config, transaction
from pooler.crypto.keyring import ensure_dev_keyring


def _init(_args: argparse.Namespace) -> int:
    config = load_cli_config()
    # Quiet unless it created something: `make run` calls this every time and must say so only once.
    if ensure_dev_keyring(config):
        print(
            f"created a local dev keyring at {config.keyring_file} (mode 0600): keep it; losing it loses every "
            "stored credential. In production set POOLER_SECRET_KEYS and POOLER_KEY_PEPPER instead."
        )
    return 0


def _rotate(args: argparse.Namespace) -> int:
    # Imported here: it pulls in the operator service (argon2), which would slow every `pooler` start-up.
    from pooler.services.secrets_rotation import rotate_secrets

    with core_context() as ctx, transaction(ctx) as session:
        report = rotate_secrets(session, ctx.box, actor=cli_actor(), force=args.force)
    print(
        f"re-encrypted {report.rotated} secrets to key {report.current_key_id} "
        f"({report.account_secrets} account tokens, {report.settings} settings, {report.operator_totp} TOTP seeds; "
        f"{report.already_current} were already on it). Older keys can now be removed from POOLER_SECRET_KEYS."
    )
    return 0


def register(subparsers: Any) -> None:
    group = command_group(subparsers, "secrets", "the secret keyring")
    command(group, _init, "init", help="create a local dev keyring file when none is configured")
    p = command(group, _rotate, "rotate", help="re-encrypt every secret to the current key, in one transaction")
    p.add_argument("--force", action="store_true", help="re-seal secrets already on the current key too")
