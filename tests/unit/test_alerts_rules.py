"""Alert rules as pure functions over hand-built snapshots, and the webhook signature scheme."""

from __future__ import annotations

import datetime as dt
import time

from pooler.alerts.rules import (
    AlertSnapshot,
    JobHealth,
    KeyErrors,
    PoolState,
    Severity,
    Thresholds,
    evaluate_rules,
)
from pooler.alerts.webhook import sign, verify

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def rules_of(snapshot: AlertSnapshot, th: Thresholds | None = None) -> dict[tuple[str, str], Severity]:
    return {(s.rule, s.subject): s.severity for s in evaluate_rules(snapshot, th or Thresholds())}


def test_pool_rules_by_routable_count_and_status() -> None:
    pools = [
        PoolState(1, "Empty", "active", accounts=0, routable=0),
        PoolState(2, "Thin", "active", accounts=3, routable=1, by_category={"quota_exhausted": 2}),
        PoolState(3, "Fine", "active", accounts=3, routable=3),
        PoolState(4, "Paused", "paused", accounts=2, routable=0),
    ]
    fired = rules_of(AlertSnapshot(NOW, pools=pools))
    assert fired == {
        ("pool_no_routable", "pool:1"): Severity.OUTAGE,
        ("pool_low_routable", "pool:2"): Severity.DEGRADED,
    }


def test_reauth_quota_keys_and_jobs() -> None:
    snap = AlertSnapshot(
        NOW,
        pools=[PoolState(1, "A", "active", 2, 2, by_state={"reauth_required": 1}, windows_over={"weekly": 2})],
        unassigned_reauth=2,
        key_errors=[KeyErrors("cpk_a", "A", 15, 5), KeyErrors(None, None, 19, 0), KeyErrors("cpk_b", "A", 1, 0)],
        jobs=[JobHealth("poll_usage", 3, "ConnectError", NOW), JobHealth("housekeeping", 2, None, NOW)],
    )
    fired = rules_of(snap)
    assert fired == {
        ("accounts_reauth_required", "pool:1"): Severity.WATCH,
        ("accounts_reauth_required", "unassigned"): Severity.INFO,
        ("quota_above_threshold", "pool:1"): Severity.WATCH,
        ("key_errors_spike", "key:cpk_a"): Severity.SECURITY,
        ("job_failing", "job:poll_usage"): Severity.DEGRADED,
    }
    th = Thresholds(key_error_threshold=19, job_failure_runs=2)
    fired = rules_of(snap, th)
    assert ("key_errors_spike", "key:-") in fired and ("job_failing", "job:housekeeping") in fired


def test_signal_details_are_metadata_only() -> None:
    snap = AlertSnapshot(NOW, pools=[PoolState(1, "Team", "active", 1, 0, by_category={"reauth": 1})])
    (signal,) = evaluate_rules(snap, Thresholds())
    details = signal.as_details()
    assert details["pool"] == "Team" and details["impact"] and details["next_check"]
    assert set(details) <= {"pool", "accounts", "routable", "not_routable_by_category", "impact", "next_check"}


def test_signature_round_trip_and_rejections() -> None:
    body = b'{"a":1}'
    t = int(time.time())
    header = sign("s3cret", t, body)
    assert header.startswith(f"t={t},v1=")
    assert verify("s3cret", header, body)
    assert not verify("s3cret", header, b'{"a":2}')
    assert not verify("other", header, body)
    assert not verify("s3cret", sign("s3cret", t - 3600, body), body)  # replayed: too old
    assert not verify("s3cret", "v1=abc", body) and not verify("s3cret", "t=x,v1=abc", body)
    rotated = header + ",v1=" + sign("old", t, body).split("v1=")[1]
    assert verify("old", rotated, body) and verify("s3cret", rotated, body)
