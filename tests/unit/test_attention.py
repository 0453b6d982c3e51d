"""The attention model: live signals joined with stored incidents, pool badges, job run status (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from admin_flask.health import health_level
from pooler.alerts.rules import Severity, Signal
from pooler.attention import (
    AttentionItem,
    IncidentFacts,
    ItemState,
    JobLevel,
    attention,
    incident_state,
    job_status,
    pool_badge,
    worst,
)

NOW = dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.UTC)


def signal(rule: str, subject: str, severity: Severity) -> Signal:
    return Signal(rule, subject, severity, f"{rule} {subject}", "impact", "check", {})


def incident(id_: int, rule: str, subject: str, severity: str = "outage", **kw: object) -> IncidentFacts:
    base: dict[str, object] = {
        "id": id_,
        "rule": rule,
        "subject": subject,
        "severity": severity,
        "status": "open",
        "title": f"{rule} {subject}",
        "details": {"impact": "stored impact", "next_check": "stored check"},
        "opened_at": NOW - dt.timedelta(minutes=id_),
    }
    base.update(kw)
    return IncidentFacts(**base)  # type: ignore[arg-type]


def test_a_live_signal_shows_before_the_scheduler_records_it() -> None:
    items = attention([signal("pool_no_routable", "pool:3", Severity.OUTAGE)], [], NOW)
    assert [(i.state, i.incident_id, i.pool_id, i.severity) for i in items] == [(ItemState.NEW, None, 3, "outage")]


def test_stored_incident_carries_acknowledgement_and_silence() -> None:
    signals = [signal("pool_no_routable", "pool:3", Severity.OUTAGE), signal("job_failing", "job:x", Severity.WATCH)]
    stored = [
        incident(1, "pool_no_routable", "pool:3", acknowledged_at=NOW, acknowledged_by="ann"),
        incident(2, "job_failing", "job:x", "watch", silenced_until=NOW + dt.timedelta(hours=1)),
        incident(3, "key_errors_spike", "key:cpk_1", "security"),  # no longer seen: clearing
        incident(4, "pool_low_routable", "pool:9", status="resolved"),
    ]
    items = {i.subject: i for i in attention(signals, stored, NOW)}
    assert items["pool:3"].state == ItemState.ACKNOWLEDGED and items["pool:3"].acknowledged_by == "ann"
    assert items["job:x"].state == ItemState.SILENCED
    assert items["key:cpk_1"].state == ItemState.CLEARING and items["key:cpk_1"].impact == "stored impact"
    assert "pool:9" not in items


def test_loud_items_first_then_by_severity() -> None:
    signals = [
        signal("quota_above_threshold", "pool:1", Severity.WATCH),
        signal("pool_no_routable", "pool:2", Severity.OUTAGE),
        signal("key_errors_spike", "key:a", Severity.SECURITY),
        signal("pool_no_routable", "pool:3", Severity.OUTAGE),
    ]
    stored = [incident(9, "pool_no_routable", "pool:3", acknowledged_at=NOW)]
    order = [i.subject for i in attention(signals, stored, NOW)]
    assert order == ["key:a", "pool:2", "pool:1", "pool:3"]


def test_worst_ignores_quiet_items() -> None:
    loud = AttentionItem("r", "pool:1", "watch", "t", "", "", ItemState.OPEN)
    quiet = AttentionItem("r", "pool:1", "outage", "t", "", "", ItemState.ACKNOWLEDGED)
    assert worst([loud, quiet]) == "watch"
    assert worst([quiet]) is None


def test_silence_ends() -> None:
    past = incident(1, "r", "s", silenced_until=NOW - dt.timedelta(seconds=1))
    assert incident_state(past, NOW) == ItemState.OPEN


@pytest.mark.parametrize(
    ("status", "routable", "total", "text", "level"),
    [
        ("active", 0, 3, "active · 0 routable", "outage"),
        ("active", 0, 0, "active · 0 routable", "outage"),
        ("active", 2, 5, "active · 2 of 5 routable", "watch"),
        ("active", 5, 5, "active · 5 routable", "ok"),
        ("active", 1, 1, "active · 1 routable", "degraded"),  # below the alert's minimum of 2
        ("active", 1, 3, "active · 1 of 3 routable", "degraded"),
        ("paused", 0, 3, "paused", "paused"),
    ],
)
def test_pool_badge_is_what_can_route_now(status: str, routable: int, total: int, text: str, level: str) -> None:
    badge = pool_badge(status, routable, total, min_routable=2)
    assert (badge.text, badge.level) == (text, level)


def test_job_that_moved_accounts_to_reauth_is_a_warning() -> None:
    status = job_status("success", {"checked": 9, "refreshed": 3, "failed": 0, "reauth_required": 6})
    assert status.level == JobLevel.WARNING
    assert status.summary == "moved 6 accounts to reauth_required, refreshed 3"


@pytest.mark.parametrize(
    ("outcome", "counts", "error", "level", "summary"),
    [
        ("success", {"checked": 0, "refreshed": 0}, None, JobLevel.OK, "no changes"),
        ("success", {"polled": 4, "state_changes": 1}, None, JobLevel.OK, "polled 4, changed 1 account state"),
        ("partial", {"polled": 2, "failed": 1}, None, JobLevel.WARNING, "1 failed, polled 2"),
        ("failed", None, "OperationalError", JobLevel.FAILED, "failed (OperationalError)"),
        ("running", None, None, JobLevel.RUNNING, "running"),
    ],
)
def test_job_status(
    outcome: str, counts: dict[str, int] | None, error: str | None, level: JobLevel, summary: str
) -> None:
    status = job_status(outcome, counts, error)
    assert (status.level, status.summary) == (level, summary)


@pytest.mark.parametrize(
    ("score", "routable", "level"),
    [(94, False, "blocked"), (94, True, "ok"), (60, True, "warn"), (20, True, "blocked"), (None, True, "none")],
)
def test_health_is_red_for_an_account_that_cannot_route_now(score: int | None, routable: bool, level: str) -> None:
    assert health_level(score, routable) == level
