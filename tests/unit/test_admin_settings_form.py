"""Parsing the grouped settings forms and the pricing rows (pure, no I/O); the catalogue's groups and kinds."""

from __future__ import annotations

from admin_flask.settings_form import duration_text, parse_group, parse_pricing, pricing_rows
from pooler.settings import CATALOGUE, Kind, SettingView, Unit


def _view(name: str, value: object, is_default: bool = True) -> SettingView:
    d = CATALOGUE[name]
    return SettingView(d, value, is_default=is_default, is_set=value is not None)  # type: ignore[arg-type]


def test_every_setting_has_a_group_a_kind_and_a_title() -> None:
    for d in CATALOGUE.values():
        assert d.group != "Other" and d.title and d.title[0].isupper(), d.name
        if d.type is bool:
            assert d.kind is Kind.TOGGLE
    assert CATALOGUE["demotion_seconds"].kind is Kind.DURATION
    assert CATALOGUE["smtp_password"].kind is Kind.SECRET
    assert CATALOGUE["auth_base_url"].kind is Kind.URL
    assert CATALOGUE["request_log_retention_days"].title == "Request log retention"


def test_parse_group_writes_only_changes_and_names_errors() -> None:
    views = [
        _view("demotion_seconds", 30),
        _view("sticky_ttl_default_seconds", 100, is_default=False),
        _view("smtp_starttls", True),
        _view("smtp_password", None),
        _view("alert_webhook_url", None),
    ]
    changes = parse_group(views, {"demotion_seconds": "30", "sticky_ttl_default_seconds": "", "smtp_password": ""})
    assert changes.values == {"smtp_starttls": False} and changes.resets == ["sticky_ttl_default_seconds"]
    bad = parse_group(views, {"demotion_seconds": "soon", "alert_webhook_url": "ftp://x", "smtp_starttls": "on"})
    assert set(bad.errors) == {"demotion_seconds", "alert_webhook_url"}
    assert "http" in bad.errors["alert_webhook_url"] and not bad.errors["demotion_seconds"].startswith("setting")


def test_duration_text() -> None:
    assert duration_text(3600, Unit.SECONDS) == "1h"
    assert duration_text(604800, Unit.SECONDS) == "7d"
    assert duration_text(90, Unit.SECONDS) == "90s"
    assert duration_text(1000, Unit.MILLISECONDS) == "1s"
    assert duration_text(0, Unit.SECONDS) == "" and duration_text(5, Unit.NONE) == ""


def test_pricing_rows_round_trip_and_errors() -> None:
    rows = pricing_rows({"*": {"input": 2, "cached_input": 0, "output": 8}, "gpt-5": {"input": 1, "output": 10}})
    assert [m for m, _ in rows] == ["gpt-5", "*", "", "", ""]
    form = {f"{part}-{i}": text for i, (_, prices) in enumerate(rows) for part, text in prices.items()}
    form |= {f"model-{i}": model for i, (model, _) in enumerate(rows)}
    parsed = parse_pricing(form, len(rows))
    assert not parsed.errors and parsed.table["gpt-5"] == {"input": 1.0, "cached_input": 0.0, "output": 10.0}
    bad = parse_pricing({"model-0": "a", "input-0": "x", "model-1": "b", "output-1": "inf"}, 2)
    assert bad.errors == {0: "input must be a number", 1: "output must be zero or more"} and not bad.table
