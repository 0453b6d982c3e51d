"""`pooler up --demo` seeding: point the upstream at the local simulator, a `demo` pool with 3 simulator accounts,
and a fresh Pool key. Idempotent: a re-run reuses the pool and re-imports the same accounts (fresh tokens);
it creates a new key each time because a raw key can never be shown twice.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass

from pooler.audit import SYSTEM
from pooler.config import Config
from pooler.context import open_context
from pooler.errors import NotFoundError

DEMO_POOL = "demo"
DEMO_ACCOUNTS = ("acct-1", "acct-2", "acct-3")
DEMO_PLAN = "plus"
DEMO_MODEL = "gpt-5.5"
"""A model in the bundled model list of both pinned Codex CLIs (0.169, 0.171); one they do not know makes them
warn about missing model metadata on every run."""
ENV_KEY = "POOLER_API_KEY"
SIMULATOR_PORT_ENV = "POOLER_DEMO_SIMULATOR_PORT"


@dataclass(frozen=True)
class DemoSeed:
    pool_name: str
    account_count: int
    raw_key: str
    """Shown once, in the ready output; stored only as a keyed hash."""


def simulator_port_from_env() -> int | None:
    raw = os.environ.get(SIMULATOR_PORT_ENV, "")
    return int(raw) if raw.isdigit() else None


def _auth_documents(secret: str | None = None) -> list[bytes]:
    # The simulator signs tokens statelessly with its secret, so files minted here are valid for the child
    # simulator as long as both use the same secret (the dev default, or $POOLER_SIM_SECRET).
    from pooler.simulator.authjson import make_auth_json
    from pooler.simulator.tokens import Identity, default_secret

    secret = secret or default_secret()
    now = time.time()
    docs = [make_auth_json(Identity(acct, DEMO_PLAN, f"{acct}@demo.invalid"), secret, now) for acct in DEMO_ACCOUNTS]
    return [json.dumps(doc).encode() for doc in docs]


def seed_demo(config: Config, upstream_url: str) -> DemoSeed:
    from pooler.services import accounts, keys, pools
    from pooler.settings import set_setting

    ctx = open_context(config)
    try:
        with ctx.session_factory.begin() as session:
            set_setting(session, "upstream_base_url", upstream_url, actor=SYSTEM)
            set_setting(session, "auth_base_url", upstream_url, actor=SYSTEM)
            try:
                pool = pools.get_pool(session, DEMO_POOL)
            except NotFoundError:  # first run
                pool = pools.create_pool(session, name=DEMO_POOL, label="Demo (simulator)", actor=SYSTEM)
            for doc in _auth_documents():
                # replace=True: a re-run refreshes the same three accounts instead of failing on duplicates.
                accounts.import_auth_json(session, ctx.box, pool=pool, data=doc, actor=SYSTEM, replace=True)
            created = keys.create_key(session, ctx.hasher, pool=pool, label="demo key", actor=SYSTEM)
        return DemoSeed(pool_name=DEMO_POOL, account_count=len(DEMO_ACCOUNTS), raw_key=created.raw)
    finally:
        ctx.dispose()


def codex_config_toml(codex_base_url: str, websockets: bool = False) -> str:
    lines = [
        'model_provider = "pooler"',
        f'model = "{DEMO_MODEL}"',
        "",
        "[model_providers.pooler]",
        'name = "Codex Pooler"',
        f'base_url = "{codex_base_url}"',
        f'env_key = "{ENV_KEY}"',
        'wire_api = "responses"',
    ]
    lines.append("supports_websockets = true" if websockets else "# supports_websockets = true  # websocket transport")
    return "\n".join(lines) + "\n"


def curl_line(client_url: str, raw_key: str) -> str:
    body = json.dumps(
        {
            "model": DEMO_MODEL,
            "stream": True,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
        },
        separators=(",", ":"),
    )
    return (
        f"curl -sN {client_url}/backend-api/codex/responses -H 'Authorization: Bearer {raw_key}' "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def demo_instructions(client_url: str, seed: DemoSeed) -> str:
    codex_base = f"{client_url}/backend-api/codex"
    toml = codex_config_toml(codex_base)
    indented = "\n".join("    " + line if line else "" for line in toml.splitlines())
    return (
        f"\nDemo pool {seed.pool_name!r}: {seed.account_count} simulator accounts.\n"
        f"Pool key (shown once, stored only as a hash): {seed.raw_key}\n\n"
        f"Codex CLI: add to ~/.codex/config.toml\n\n{indented}\n\n"
        f"  then: export {ENV_KEY}={seed.raw_key}\n"
        '        codex exec "Say hello"\n\n'
        f"curl:\n  {curl_line(client_url, seed.raw_key)}\n\n"
        f"OpenAI SDKs (/v1): base_url={client_url}/v1  api_key={seed.raw_key}  model={DEMO_MODEL}\n\n"
        "Ctrl-C stops everything.\n"
    )
