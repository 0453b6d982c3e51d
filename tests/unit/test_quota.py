from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.models import QuotaWindow, UpstreamAccount
from pooler.quota import (
    WindowObservation,
    limit_error_reset,
    parse_rate_limit_headers,
    parse_rate_limits_event,
    parse_usage_payload,
    record_observations,
    window_kind,
)
from pooler.states import QuotaSource

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def test_headers_classify_windows_by_minutes_not_slot() -> None:
    headers = {
        # a plan reporting only a weekly window, in the primary slot
        "x-codex-primary-used-percent": "42.5",
        "x-codex-primary-window-minutes": "10080",
        "x-codex-primary-reset-at": str(int(NOW.timestamp()) + 3600),
        "x-codex-plan-type": "plus",
    }
    [obs] = parse_rate_limit_headers(headers, NOW)
    assert obs == WindowObservation("codex", 10080, 42.5, NOW + dt.timedelta(hours=1))
    assert window_kind(obs.window_minutes) == "weekly"


def test_headers_reset_after_seconds_and_other_families() -> None:
    headers = {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-after-seconds": "60",
        "x-codex-secondary-used-percent": "7",
        "x-codex-secondary-window-minutes": "10080",
        "x-gpt-5-pro-primary-used-percent": "150",
        "x-gpt-5-pro-primary-window-minutes": "300",
        "x-codex-secondary-reset-at": "garbage",
    }
    obs = {(o.limit_family, o.window_minutes): o for o in parse_rate_limit_headers(headers, NOW)}
    assert obs[("codex", 300)].resets_at == NOW + dt.timedelta(seconds=60)
    assert obs[("codex", 10080)].resets_at is None
    assert obs[("gpt-5-pro", 300)].used_percent == 100.0  # clamped


def test_incomplete_or_junk_headers_give_no_evidence() -> None:
    assert parse_rate_limit_headers({"x-codex-primary-used-percent": "NaN"}, NOW) == []
    assert parse_rate_limit_headers({"x-codex-primary-used-percent": "5"}, NOW) == []


def test_usage_payload() -> None:
    payload = {
        "plan_type": "pro",
        "rate_limit": {
            "allowed": True,
            "limit_reached": False,
            "primary_window": {"used_percent": 12, "limit_window_seconds": 18000, "reset_after_seconds": 100},
            "secondary_window": {"used_percent": 3, "limit_window_seconds": 604800, "reset_at": 1_800_000_000},
        },
    }
    five, week = parse_usage_payload(payload, NOW)
    assert (five.window_minutes, five.used_percent, five.resets_at) == (300, 12.0, NOW + dt.timedelta(seconds=100))
    assert week.window_minutes == 10080 and week.resets_at == dt.datetime.fromtimestamp(1_800_000_000, dt.UTC)
    assert parse_usage_payload({"rate_limit": None}, NOW) == []
    assert parse_usage_payload([1, 2], NOW) == []


def test_rate_limits_event_and_limit_error() -> None:
    event = {"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": 42, "window_minutes": 300}}}
    assert [o.window_minutes for o in parse_rate_limits_event(event, NOW)] == [300]
    body = {"error": {"type": "usage_limit_reached", "resets_at": int(NOW.timestamp()) + 5}}
    assert limit_error_reset(body, NOW) == NOW + dt.timedelta(seconds=5)
    assert limit_error_reset({"error": {"type": "other", "resets_at": 1}}, NOW) is None


def test_record_keeps_newest_evidence(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        account = UpstreamAccount(label="q", chatgpt_account_id=f"acct-quota-{id(session)}")
        session.add(account)
        session.flush()
        account_id = account.id
        newer = [WindowObservation("codex", 300, 80.0, None)]
        older = [WindowObservation("codex", 300, 10.0, None)]
        assert record_observations(session, account_id, newer, QuotaSource.HEADERS, NOW) == 1
        assert (
            record_observations(session, account_id, older, QuotaSource.USAGE_API, NOW - dt.timedelta(minutes=1)) == 0
        )
    with session_factory() as session:
        row = session.scalars(select(QuotaWindow).where(QuotaWindow.account_id == account_id)).one()
        assert (row.used_percent, row.source, row.observed_at) == (80.0, "headers", NOW)
