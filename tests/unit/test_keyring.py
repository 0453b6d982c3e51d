"""Keyring and pepper loading: a wrong or malformed keyring is a clear ConfigError listing every problem."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pooler.config import load_config
from pooler.context import open_context
from pooler.crypto.keyring import ensure_dev_keyring, load_server_secrets, new_key_material, parse_keyring
from pooler.errors import ConfigError


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"POOLER_DATA_DIR": str(tmp_path), **extra}


def test_parse_keyring_first_is_current() -> None:
    ring = parse_keyring(f"k2:{new_key_material()}, k1:{new_key_material()}")
    assert ring.current_id == "k2" and set(ring.keys) == {"k1", "k2"}


def test_malformed_keyring_lists_every_problem() -> None:
    short = "c2hvcnQ="  # "short"
    with pytest.raises(ConfigError) as info:
        parse_keyring(f"nocolon,k1:{short},k2:!!notbase64!!,k3:{new_key_material()},k3:{new_key_material()}")
    problems = info.value.problems
    assert len(problems) == 4
    assert any("must look like id:base64key" in p for p in problems)
    assert any("'k1' must decode to 32 bytes, got 5" in p for p in problems)
    assert any("'k2' is not valid base64" in p for p in problems)
    assert any("lists key id 'k3' twice" in p for p in problems)


def test_missing_keyring_and_bad_pepper_reported_together(tmp_path: Path) -> None:
    config = load_config(_env(tmp_path, POOLER_KEY_PEPPER="bad"))
    with pytest.raises(ConfigError) as info:
        load_server_secrets(config)
    assert len(info.value.problems) == 2
    assert "POOLER_SECRET_KEYS is not set" in info.value.problems[0]
    assert "POOLER_KEY_PEPPER" in info.value.problems[1]


def test_open_context_refuses_wrong_keyring(tmp_path: Path) -> None:
    config = load_config(_env(tmp_path, POOLER_SECRET_KEYS="k1:AAAA", POOLER_KEY_PEPPER=new_key_material()))
    with pytest.raises(ConfigError, match="must decode to 32 bytes"):
        open_context(config)


def test_dev_keyring_created_once_with_mode_0600(tmp_path: Path) -> None:
    config = load_config(_env(tmp_path))
    assert ensure_dev_keyring(config) is True
    assert stat.S_IMODE(os.stat(config.keyring_file).st_mode) == 0o600
    first = config.keyring_file.read_text()
    assert ensure_dev_keyring(config) is False
    assert config.keyring_file.read_text() == first
    secrets = load_server_secrets(config)
    assert secrets.keyring.current_id == "dev1" and len(secrets.pepper) == 32


def test_environment_keyring_wins_and_skips_dev_file(tmp_path: Path) -> None:
    config = load_config(_env(tmp_path, POOLER_SECRET_KEYS=f"prod:{new_key_material()}"))
    assert ensure_dev_keyring(config) is False
    assert not config.keyring_file.exists()
