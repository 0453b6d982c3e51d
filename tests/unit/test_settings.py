"""Settings catalogue: defaults, typed set/get, validation, secrets sealed in the box and never returned."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pooler import settings
from pooler.audit import Actor
from pooler.crypto.keyring import new_key_material, parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.errors import NotFoundError, PoolerError, SecretBoxError
from pooler.models import Setting
from pooler.states import ActorType

ACTOR = Actor(ActorType.CLI, "tester")
REQUIRED = {
    "upstream_base_url": "https://chatgpt.com",
    "auth_base_url": "https://auth.openai.com",
    "oauth_client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
    "request_log_retention_days": 30,
    "refresh_horizon_hours": 24,
    "usage_poll_interval_seconds": 300,
    "quota_evidence_stale_seconds": 900,
    "sticky_ttl_default_seconds": 3600,
    "demotion_seconds": 30,
}


def test_catalogue_defaults() -> None:
    for name, default in REQUIRED.items():
        assert settings.CATALOGUE[name].default == default
        assert settings.CATALOGUE[name].description


def test_coerce_parses_and_validates() -> None:
    d = settings.definition("demotion_seconds")
    assert d.coerce("45") == 45
    with pytest.raises(PoolerError, match="at least 0"):
        d.coerce(-1)
    with pytest.raises(PoolerError, match="must be of type int"):
        d.coerce("SECRET-typo")
    with pytest.raises(PoolerError, match="must be of type int"):
        d.coerce(True)
    with pytest.raises(PoolerError, match="URL"):
        settings.definition("upstream_base_url").coerce("ftp://x")
    with pytest.raises(NotFoundError):
        settings.definition("nope")


def test_get_number_reads_the_catalogue_default(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        assert settings.get_number(s, "smtp_port") == 587
        assert settings.get_number(s, "alert_quota_percent") == 90.0
        settings.set_setting(s, "demotion_seconds", 0, actor=ACTOR)
        assert settings.get_number(s, "demotion_seconds") == 0
        s.get(Setting, "demotion_seconds").value = {"v": None}  # never written by set_setting
        assert settings.get_number(s, "demotion_seconds") == 30
        with pytest.raises(PoolerError, match="no numeric default"):
            settings.get_number(s, "upstream_base_url")


@pytest.fixture
def secret_setting(monkeypatch: pytest.MonkeyPatch) -> str:
    name = "test_webhook_token"
    monkeypatch.setitem(settings.CATALOGUE, name, settings._s(name, str, None, "test only", secret=True))
    return name


def test_set_get_reset(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        settings.reset_setting(s, "demotion_seconds", actor=ACTOR)
        assert settings.get_setting(s, "demotion_seconds") == 30
        assert settings.set_setting(s, "demotion_seconds", "12", actor=ACTOR) == 12
    with session_factory.begin() as s:
        assert settings.get_setting(s, "demotion_seconds") == 12
        view = next(v for v in settings.list_settings(s) if v.definition.name == "demotion_seconds")
        assert (view.value, view.is_default) == (12, False)
        settings.reset_setting(s, "demotion_seconds", actor=ACTOR)
    with session_factory.begin() as s:
        assert settings.get_setting(s, "demotion_seconds") == 30


def test_secret_setting_is_sealed(session_factory: sessionmaker[Session], secret_setting: str) -> None:
    box = SecretBox(parse_keyring(f"k1:{new_key_material()}"))
    with session_factory.begin() as s:
        with pytest.raises(SecretBoxError):
            settings.set_setting(s, secret_setting, "tok-SECRET", actor=ACTOR)
        settings.set_setting(s, secret_setting, "tok-SECRET", actor=ACTOR, box=box)
    with session_factory.begin() as s:
        row = s.get(Setting, secret_setting)
        assert row is not None and "tok-SECRET" not in json.dumps(row.value)
        assert settings.get_setting(s, secret_setting, box) == "tok-SECRET"
        view = next(v for v in settings.list_settings(s) if v.definition.name == secret_setting)
        assert view.value is None and view.is_set
        settings.reset_setting(s, secret_setting, actor=ACTOR)


def test_json_setting_round_trip(session_factory: sessionmaker[Session]) -> None:
    """`admin_model_pricing` is a catalogue JSON setting: stored as {"v": {...}}, read with get_json_setting."""
    d = settings.definition("admin_model_pricing")
    assert d.is_json and d.default is None
    with pytest.raises(PoolerError, match="JSON object"):
        d.coerce("[1, 2]")
    with pytest.raises(PoolerError, match="not JSON"):
        d.coerce("{oops")
    with pytest.raises(PoolerError, match="larger than"):
        d.coerce({"x": "y" * settings.MAX_JSON_SETTING_BYTES})
    table = {"gpt-5": {"input": 1.25, "cached_input": 0.125, "output": 10.0}}
    with session_factory.begin() as s:
        settings.reset_setting(s, "admin_model_pricing", actor=ACTOR)
        assert settings.get_json_setting(s, "admin_model_pricing") is None
        with pytest.raises(PoolerError, match="get_json_setting"):
            settings.get_setting(s, "admin_model_pricing")
        with pytest.raises(PoolerError, match="get_setting"):
            settings.get_json_setting(s, "demotion_seconds")
        settings.set_setting(s, "admin_model_pricing", json.dumps(table), actor=ACTOR)
    with session_factory.begin() as s:
        assert settings.get_json_setting(s, "admin_model_pricing") == table
        row = s.get(Setting, "admin_model_pricing")
        assert row is not None and row.value == {"v": table}  # the admin's former raw row format
        view = next(v for v in settings.list_settings(s) if v.definition.name == "admin_model_pricing")
        assert (view.value, view.is_default) == (table, False)
        settings.reset_setting(s, "admin_model_pricing", actor=ACTOR)
