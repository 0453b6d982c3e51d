"""Alert rules fire and resolve against simulated states (real DB rows) on SQLite and PostgreSQL.

Each backend gets a private, freshly migrated database for this module: alert evaluation looks at every pool,
key and job of the instance, and alert settings are instance-wide, so sharing the session databases with other
tests would make the assertions depend on their rows. Tables are emptied before each test.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from pooler.alerts import evaluate as alert_eval
from pooler.alerts.incidents import apply_signals
from pooler.alerts.rules import Severity, Signal
from pooler.audit import SYSTEM
from pooler.db import make_engine, make_session_factory
from pooler.migrate import upgrade
from pooler.models import (
    AlertDelivery,
    AlertIncident,
    AuditEvent,
    JobRun,
    Pool,
    PoolAssignment,
    PoolKey,
    PoolSettings,
    QuotaWindow,
    RequestLog,
    Setting,
    UpstreamAccount,
)
from pooler.settings import set_setting
from tests.support.databases import throwaway_postgres_database

Factory = sessionmaker[Session]
T0 = dt.datetime(2030, 1, 6, 12, 0, tzinfo=dt.UTC)
WIPE = (
    AlertDelivery,
    AlertIncident,
    RequestLog,
    JobRun,
    QuotaWindow,
    PoolAssignment,
    PoolKey,
    PoolSettings,
    Pool,
    UpstreamAccount,
    Setting,
    AuditEvent,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def alerts_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('alerts') / 'alerts.db'}"
        upgrade(url)
        yield url
        return
    with throwaway_postgres_database("pooler_alerts") as url:
        upgrade(url)
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def factory(alerts_db_url: str) -> Iterator[Factory]:
    engine = make_engine(alerts_db_url)
    f = make_session_factory(engine)
    with f.begin() as s:
        for model in WIPE:
            s.execute(delete(model))
    yield f
    engine.dispose()


def set_settings(f: Factory, box: Any = None, **values: object) -> None:
    with f.begin() as s:
        for name, value in values.items():
            set_setting(s, name, value, actor=SYSTEM, box=box)


def add_pool(f: Factory, label: str, states: list[str], **pool_settings: Any) -> tuple[int, list[int]]:
    """A pool with one account per given lifecycle state (tokens valid for a day)."""
    with f.begin() as s:
        pool = Pool(name=f"p-{secrets.token_hex(3)}", label=label)
        pool.settings = PoolSettings(**pool_settings)
        s.add(pool)
        s.flush()
        ids = []
        for state in states:
            account = UpstreamAccount(
                label=f"acct-{secrets.token_hex(3)}",
                chatgpt_account_id=f"acc-{secrets.token_hex(6)}",
                state=state,
                access_token_expires_at=T0 + dt.timedelta(days=1),
            )
            s.add(account)
            s.flush()
            s.add(PoolAssignment(pool_id=pool.id, account_id=account.id))
            ids.append(account.id)
        return pool.id, ids


def header_window(
    account_id: int, window_minutes: int, used_percent: float, *, resets_at: dt.datetime, observed_at: dt.datetime
) -> QuotaWindow:
    """A quota window as the gateway records it from response headers."""
    return QuotaWindow(
        account_id=account_id,
        window_minutes=window_minutes,
        used_percent=used_percent,
        resets_at=resets_at,
        source="headers",
        observed_at=observed_at,
    )


def set_states(f: Factory, ids: list[int], state: str) -> None:
    with f.begin() as s:
        for account_id in ids:
            s.get_one(UpstreamAccount, account_id).state = state


def incidents(f: Factory, status: str | None = None) -> dict[tuple[str, str], AlertIncident]:
    with f() as s:
        query = select(AlertIncident)
        if status:
            query = query.where(AlertIncident.status == status)
        rows = list(s.scalars(query))
        s.expunge_all()
    return {(i.rule, i.subject): i for i in rows}


def deliveries(f: Factory) -> list[tuple[int, str, str]]:
    with f() as s:
        return [
            (d.incident_id, d.event, d.channel) for d in s.scalars(select(AlertDelivery).order_by(AlertDelivery.id))
        ]


def evaluate(f: Factory, now: dt.datetime) -> dict[str, int]:
    return dict(alert_eval.evaluate(f, now))


def test_pool_without_routable_account_opens_outage_then_resolves(factory: Factory) -> None:
    set_settings(factory, alert_cooldown_seconds=0, alert_webhook_url="http://127.0.0.1:9/hook")
    pool_id, ids = add_pool(factory, "Team A", ["reauth_required", "reauth_required"])
    counts = evaluate(factory, T0)
    assert counts["opened"] == 2
    opened = incidents(factory, "open")
    outage = opened[("pool_no_routable", f"pool:{pool_id}")]
    assert outage.severity == Severity.OUTAGE
    assert outage.details["pool"] == "Team A"
    assert outage.details["not_routable_by_category"] == {"reauth": 2}
    reauth = opened[("accounts_reauth_required", f"pool:{pool_id}")]
    assert reauth.severity == Severity.WATCH and reauth.details["accounts_in_state"] == 2
    assert sorted(e for _, e, _ in deliveries(factory)) == ["opened", "opened"]

    # The same state again: no new incident, no new notification.
    assert evaluate(factory, T0 + dt.timedelta(minutes=1))["opened"] == 0
    assert len(deliveries(factory)) == 2

    set_states(factory, ids, "active")
    counts = evaluate(factory, T0 + dt.timedelta(minutes=2))
    assert counts["resolved"] == 2
    assert not incidents(factory, "open")
    resolved = incidents(factory, "resolved")[("pool_no_routable", f"pool:{pool_id}")]
    assert resolved.resolved_at == T0 + dt.timedelta(minutes=2)
    assert [e for _, e, _ in deliveries(factory)].count("resolved") == 2
    with factory() as s:
        actions = sorted(a for a in s.scalars(select(AuditEvent.action)) if a.startswith("alert."))
    assert actions == ["alert.open", "alert.open", "alert.resolve", "alert.resolve"]


def test_cooldown_keeps_a_flapping_condition_one_incident(factory: Factory) -> None:
    set_settings(
        factory, alert_cooldown_seconds=600, alert_min_routable_accounts=1, alert_webhook_url="http://127.0.0.1:9/hook"
    )
    pool_id, ids = add_pool(factory, "Flappy", ["paused"])
    key = ("pool_no_routable", f"pool:{pool_id}")
    evaluate(factory, T0)
    first = incidents(factory, "open")[key]

    set_states(factory, ids, "active")
    evaluate(factory, T0 + dt.timedelta(minutes=1))
    still = incidents(factory, "open")[key]
    assert still.id == first.id and still.clear_since == T0 + dt.timedelta(minutes=1)

    set_states(factory, ids, "paused")  # back within the cooldown: same incident, clear period reset
    evaluate(factory, T0 + dt.timedelta(minutes=3))
    assert incidents(factory, "open")[key].clear_since is None

    set_states(factory, ids, "active")
    evaluate(factory, T0 + dt.timedelta(minutes=4))
    assert evaluate(factory, T0 + dt.timedelta(minutes=13))["resolved"] == 0  # 9 minutes clear < 10
    assert evaluate(factory, T0 + dt.timedelta(minutes=14))["resolved"] == 1
    assert [e for _, e, _ in deliveries(factory)] == ["opened", "resolved"]

    # After it resolved, the condition coming back is a new incident with its own notification.
    set_states(factory, ids, "paused")
    evaluate(factory, T0 + dt.timedelta(minutes=15))
    assert incidents(factory, "open")[key].id != first.id
    assert [e for _, e, _ in deliveries(factory)] == ["opened", "resolved", "opened"]


def test_low_routable_and_quota_threshold(factory: Factory) -> None:
    set_settings(factory, alert_min_routable_accounts=3, alert_quota_percent=80.0, alert_cooldown_seconds=0)
    pool_id, ids = add_pool(factory, "Busy", ["active", "active", "paused"])
    with factory.begin() as s:
        s.add(header_window(ids[0], 300, 85.0, resets_at=T0 + dt.timedelta(hours=1), observed_at=T0))
        s.add(header_window(ids[1], 10080, 40.0, resets_at=T0 + dt.timedelta(days=2), observed_at=T0))
        # A full window whose reset already passed is no evidence of pressure.
        s.add(
            header_window(
                ids[1], 300, 100.0, resets_at=T0 - dt.timedelta(minutes=1), observed_at=T0 - dt.timedelta(hours=5)
            )
        )
    evaluate(factory, T0)
    opened = incidents(factory, "open")
    low = opened[("pool_low_routable", f"pool:{pool_id}")]
    assert low.severity == Severity.DEGRADED
    assert low.details["routable"] == 2 and low.details["minimum"] == 3
    quota = opened[("quota_above_threshold", f"pool:{pool_id}")]
    assert quota.details["accounts_over_by_window"] == {"5h": 1}
    assert ("pool_no_routable", f"pool:{pool_id}") not in opened
    assert not deliveries(factory)  # no channel configured: incidents are recorded, nothing is queued

    set_states(factory, ids[2:], "active")
    with factory.begin() as s:
        s.execute(delete(QuotaWindow))
    evaluate(factory, T0 + dt.timedelta(minutes=1))
    assert not incidents(factory, "open")


def test_key_error_spike_and_failing_job(factory: Factory) -> None:
    set_settings(
        factory,
        alert_key_error_threshold=5,
        alert_key_error_window_minutes=10,
        alert_job_failure_runs=3,
        alert_cooldown_seconds=0,
    )
    pool_id, _ = add_pool(factory, "Keys", ["active", "active"])
    with factory.begin() as s:
        s.add(PoolKey(pool_id=pool_id, label="ci", prefix="cpk_spike001", key_hash="0" * 64))
        for i in range(6):
            status = 401 if i % 2 else 403
            s.add(
                RequestLog(
                    created_at=T0 - dt.timedelta(minutes=2),
                    request_id=f"spike-{i}",
                    pool_id=pool_id,
                    key_prefix="cpk_spike001",
                    route_family="responses",
                    method="POST",
                    status_code=status,
                )
            )
        # Old errors are outside the window; other statuses never count.
        for i in range(10):
            s.add(
                RequestLog(
                    created_at=T0 - dt.timedelta(minutes=30),
                    request_id=f"old-{i}",
                    key_prefix="cpk_quiet002",
                    route_family="responses",
                    method="POST",
                    status_code=401,
                )
            )
            s.add(
                RequestLog(
                    created_at=T0,
                    request_id=f"ok-{i}",
                    key_prefix="cpk_quiet002",
                    route_family="responses",
                    method="POST",
                    status_code=429,
                )
            )
        for n in range(4):
            outcome = "success" if n == 0 else "failed"
            slot = T0 - dt.timedelta(minutes=4 - n)
            s.add(
                JobRun(
                    job_id="poll_usage",
                    slot=slot,
                    started_at=slot,
                    finished_at=slot,
                    outcome=outcome,
                    error_code=None if n == 0 else "ConnectError",
                )
            )
            s.add(JobRun(job_id="housekeeping", slot=slot, started_at=slot, finished_at=slot, outcome="failed"))
        s.add(JobRun(job_id="refresh_due_tokens", slot=T0, started_at=T0, outcome="running"))
    evaluate(factory, T0)
    opened = incidents(factory, "open")
    spike = opened[("key_errors_spike", "key:cpk_spike001")]
    assert spike.severity == Severity.SECURITY
    assert spike.details["status_401"] == 3
    assert spike.details["status_403"] == 3 and spike.details["pool"] == "Keys"
    assert ("key_errors_spike", "key:cpk_quiet002") not in opened
    job = opened[("job_failing", "job:poll_usage")]
    assert job.severity == Severity.DEGRADED and job.details["consecutive_failures"] == 3
    assert job.details["error_code"] == "ConnectError"
    assert opened[("job_failing", "job:housekeeping")].severity == Severity.WATCH
    assert ("job_failing", "job:refresh_due_tokens") not in opened

    with factory.begin() as s:
        slot = T0 + dt.timedelta(minutes=1)
        s.add(JobRun(job_id="poll_usage", slot=slot, started_at=slot, finished_at=slot, outcome="success"))
    evaluate(factory, T0 + dt.timedelta(minutes=11))  # errors aged out of the window, the job recovered
    still_open = incidents(factory, "open")
    assert ("key_errors_spike", "key:cpk_spike001") not in still_open
    assert ("job_failing", "job:poll_usage") not in still_open
    assert ("job_failing", "job:housekeeping") in still_open


def test_rising_severity_is_notified_as_escalation(factory: Factory) -> None:
    def signal(severity: Severity) -> Signal:
        return Signal("custom", "pool:1", severity, "t", "impact", "next", {"pool": "x"})

    with factory.begin() as s:
        first = apply_signals(s, [signal(Severity.WATCH)], T0, cooldown=dt.timedelta(0), channels=["webhook"])
    with factory.begin() as s:
        up = apply_signals(s, [signal(Severity.OUTAGE)], T0, cooldown=dt.timedelta(0), channels=["webhook"])
    with factory.begin() as s:
        down = apply_signals(s, [signal(Severity.WATCH)], T0, cooldown=dt.timedelta(0), channels=["webhook"])
    assert len(first.opened) == 1 and up.escalated == first.opened and not down.escalated
    assert [e for _, e, _ in deliveries(factory)] == ["opened", "escalated"]


def test_scheduler_job_runs_the_evaluation_and_records_the_run(factory: Factory) -> None:
    from types import SimpleNamespace

    import httpx

    from pooler.services import jobs
    from scheduler.jobs import JOBS

    spec = next(j for j in JOBS if j.job_id == "evaluate_alerts")
    add_pool(factory, "Scheduled", [])
    ctx: Any = SimpleNamespace(session_factory=factory, box=None)
    with httpx.Client() as http:
        outcome = jobs.execute(factory, spec.job_id, T0, lambda now: spec.run(ctx, http, now), "test")
    assert outcome == "success"
    assert "pool_no_routable" in {rule for rule, _ in incidents(factory, "open")}
    with factory() as s:
        run = s.scalars(select(JobRun).where(JobRun.job_id == "evaluate_alerts")).one()
        assert run.counts and run.counts["opened"] >= 1
