"""`pooler simulator`: the local Codex upstream, and `pooler simulator make-auth` for auth.json files it honours.

The simulator module is imported lazily so other commands never pay for aiohttp.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulator",
        help="run the Codex upstream simulator (ChatGPT backend + OAuth) on 127.0.0.1",
        description="Serve a simulated Codex upstream; prints 'simulator ready on URL' once it accepts requests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (the ready line names it)")
    parser.add_argument("--accounts", type=int, default=3, help="pre-create acct-1..acct-N")
    parser.add_argument("--plan", default="plus", help="plan of pre-created and first-seen accounts")
    parser.add_argument("--token-rate", type=float, default=0.0, help="output tokens per second (0: flat out)")
    parser.add_argument("--text", default=None, help="the answer text ('{model}' is replaced by the model)")
    parser.add_argument("--reasoning-tokens", type=int, default=0)
    parser.add_argument(
        "--device-auto-approve", type=int, default=2, help="device codes approve on this poll (0: never)"
    )
    parser.add_argument(
        "--secret", default=None, help="JWT signing secret (default $POOLER_SIM_SECRET or a dev secret)"
    )
    parser.set_defaults(func=_serve)
    sub = parser.add_subparsers(dest="simulator_command", metavar="SUBCOMMAND")

    make_auth = sub.add_parser("make-auth", help="print a Codex auth.json with tokens the simulator honours")
    make_auth.add_argument("--account", required=True, help="ChatGPT account id, e.g. acct-1")
    make_auth.add_argument("--plan", default="plus")
    make_auth.add_argument("--email", default="")
    make_auth.add_argument("--expired", action="store_true", help="access token already expired, last_refresh old")
    make_auth.add_argument("--secret", default=None)
    make_auth.add_argument(
        "--print",
        dest="field",
        choices=["auth-json", "access-token"],
        default="auth-json",
        help="the whole auth.json (default) or only the access token (for an env_key variable)",
    )
    make_auth.set_defaults(func=_make_auth)


def _serve(args: argparse.Namespace) -> int:
    from pooler.simulator.server import run
    from pooler.simulator.state import DEFAULT_TEXT, SimConfig
    from pooler.simulator.tokens import default_secret

    config = SimConfig(
        secret=args.secret or default_secret(),
        accounts=args.accounts,
        default_plan=args.plan,
        text=args.text if args.text is not None else DEFAULT_TEXT,
        token_rate=args.token_rate,
        reasoning_tokens=args.reasoning_tokens,
        device_auto_approve_polls=args.device_auto_approve,
    )
    return run(config, args.host, args.port)


def _make_auth(args: argparse.Namespace) -> int:
    from pooler.simulator.authjson import make_auth_json
    from pooler.simulator.tokens import Identity, default_secret

    doc = make_auth_json(
        Identity(args.account, args.plan, args.email),
        args.secret or default_secret(),
        time.time(),
        expired=args.expired,
    )
    print(doc["tokens"]["access_token"] if args.field == "access-token" else json.dumps(doc, indent=2))
    return 0
