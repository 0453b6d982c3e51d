"""`pooler up --demo` seeding: idempotent (one pool, the same three accounts), a fresh key per run, upstream set."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from pooler.config import load_config
from pooler.context import open_context
from pooler.crypto.keyring import ensure_dev_keyring
from pooler.demo import DEMO_MODEL, DEMO_POOL, DemoSeed, codex_config_toml, demo_instructions, seed_demo
from pooler.migrate import upgrade
from pooler.models import Pool, PoolAssignment, PoolKey, UpstreamAccount, utcnow
from pooler.services.keys import check_key
from pooler.settings import get_setting


def test_seed_twice_reuses_pool_and_accounts(tmp_path: Path) -> None:
    config = load_config({"POOLER_DATA_DIR": str(tmp_path)})
    ensure_dev_keyring(config)
    upgrade(config.database_url)
    first = seed_demo(config, "http://127.0.0.1:1234")
    second = seed_demo(config, "http://127.0.0.1:5678")
    assert first.raw_key != second.raw_key

    ctx = open_context(config)
    try:
        with ctx.session_factory() as session:
            assert session.scalar(select(func.count()).select_from(Pool)) == 1
            assert session.scalar(select(func.count()).select_from(UpstreamAccount)) == 3
            assert session.scalar(select(func.count()).select_from(PoolAssignment)) == 3
            assert session.scalar(select(func.count()).select_from(PoolKey)) == 2
            assert session.scalar(select(Pool.name)) == DEMO_POOL
            assert get_setting(session, "upstream_base_url") == "http://127.0.0.1:5678"
            assert get_setting(session, "auth_base_url") == "http://127.0.0.1:5678"
            # Both keys work: a re-run does not cut off a client configured with the earlier key.
            for raw in (first.raw_key, second.raw_key):
                assert check_key(session, ctx.hasher, raw, utcnow()).ok
    finally:
        ctx.dispose()


def test_instructions_carry_a_pasteable_codex_provider() -> None:
    toml = codex_config_toml("http://127.0.0.1:8080/backend-api/codex", websockets=True)
    assert 'base_url = "http://127.0.0.1:8080/backend-api/codex"' in toml
    assert 'wire_api = "responses"' in toml and "supports_websockets = true" in toml
    text = demo_instructions("http://127.0.0.1:8080", DemoSeed("demo", 3, "cpk_abcdefgh_secret"))
    assert "export POOLER_API_KEY=cpk_abcdefgh_secret" in text
    assert "curl -sN http://127.0.0.1:8080/backend-api/codex/responses" in text


def test_instructions_name_a_model_the_pinned_codex_cli_knows_and_the_v1_base() -> None:
    # gpt-5.5 is in the bundled model list of Codex CLI 0.169 and 0.171; gpt-5.1-codex was not (a warning on
    # every run).
    assert DEMO_MODEL == "gpt-5.5"
    text = demo_instructions("http://127.0.0.1:8080", DemoSeed("demo", 3, "cpk_abcdefgh_secret"))
    assert 'model = "gpt-5.5"' in text
    assert "base_url=http://127.0.0.1:8080/v1  api_key=cpk_abcdefgh_secret" in text
