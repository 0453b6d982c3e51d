"""The operator's attention model in the admin (Flask test client): alerts where the problem shows, pool badges
as what routes now, fixes on the card that act in place, acknowledgement and silence by role, audited."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from pooler.alerts import incidents
from pooler.alerts.evaluate import evaluate
from pooler.alerts.incidents import apply_signals
from pooler.alerts.rules import Severity, Signal
from pooler.audit import SYSTEM, Actor
from pooler.context import CoreContext
from pooler.models import AlertDelivery, AlertIncident, AuditEvent, JobRequest, JobRun, UpstreamAccount, utcnow
from pooler.services import jobs
from pooler.services.seed import SeedResult, seed
from pooler.settings import set_setting
from pooler.states import AccountState, ActorType
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth

TEAM_B = ("bob", "erin", "frank", "ivan")


def _seed(ctx: CoreContext) -> SeedResult:
    with ctx.session_factory.begin() as session:
        return seed(session, ctx.box, ctx.hasher, requests=10)


def _outage(ctx: CoreContext, data: SeedResult) -> None:
    """Every account of team-b needs a new sign-in: the pool cannot route."""
    with ctx.session_factory.begin() as session:
        for label in TEAM_B:
            account = session.get(UpstreamAccount, data.accounts[label])
            assert account is not None
            account.state = AccountState.REAUTH_REQUIRED


def _incident(ctx: CoreContext, subject: str, rule: str = "pool_no_routable") -> AlertIncident:
    with ctx.session_factory() as session:
        row = session.scalar(select(AlertIncident).where(AlertIncident.subject == subject, AlertIncident.rule == rule))
        assert row is not None
        return row


def _card(html: str, account_id: int) -> str:
    match = re.search(rf'<article class="card" id="account-{account_id}".*?</article>', html, re.S)
    assert match, f"no card for account {account_id}"
    return match.group(0)


def test_outage_shows_on_dashboard_and_pool_list_on_the_next_load(auth: Auth, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    _outage(core_ctx, data)
    dashboard = auth.client.get("/admin/").get_data(as_text=True)
    assert "Pool Team B: no routable account" in dashboard
    assert 'data-state="new"' in dashboard  # not recorded by the scheduler yet, shown anyway
    pools = auth.client.get("/admin/pools/").get_data(as_text=True)
    assert 'class="state sev-outage" data-pool-status>active · 0 routable<' in pools
    team_b = auth.client.get(f"/admin/pools/{data.pools['team-b']}").get_data(as_text=True)
    assert "active · 0 routable" in team_b and "Pool Team B: no routable account" in team_b
    # Only the pool that cannot route is in the outage colour.
    assert pools.count('sev-outage" data-pool-status') == 1


def test_acknowledge_and_silence_are_audited_and_scoped(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    _outage(core_ctx, data)
    evaluate(core_ctx.session_factory, utcnow())  # what the scheduler's alert job does
    incident = _incident(core_ctx, f"pool:{data.pools['team-b']}")
    back = "/admin/pools/?x=1"
    answer = auth.post(f"/admin/alerts/{incident.id}/acknowledge", {"back": back})
    assert answer.status_code == 302 and answer.headers["Location"] == back
    row = _incident(core_ctx, incident.subject)
    assert row.acknowledged_at is not None and row.acknowledged_by == "owner" and row.status == "open"
    acknowledged = client.get("/admin/alerts/?tab=acknowledged").get_data(as_text=True)
    assert "Pool Team B: no routable account" in acknowledged and 'data-state="acknowledged"' in acknowledged
    assert "Pool Team B: no routable account" not in client.get("/admin/alerts/").get_data(as_text=True)
    # Silence: only the offered durations; elsewhere a 400 and nothing written.
    assert auth.post(f"/admin/alerts/{incident.id}/silence", {"minutes": "5"}).status_code == 400
    assert _incident(core_ctx, incident.subject).silenced_until is None
    assert auth.post(f"/admin/alerts/{incident.id}/silence", {"minutes": "60"}).status_code == 302
    assert _incident(core_ctx, incident.subject).silenced_until is not None
    assert auth.post("/admin/alerts/999999/acknowledge").status_code == 404
    with core_ctx.session_factory() as session:
        actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.actor_label == "owner")))
        opened = session.scalar(select(AuditEvent).where(AuditEvent.action == "alert.open"))
    assert {"alert.acknowledge", "alert.silence"} <= actions
    assert opened is not None and opened.outcome in ("outage", "degraded", "watch", "security", "info")
    # A viewer reads but may not act; an admin of team-a does not see team-b's incident at all.
    auth.create_operator("vera", "viewer")
    auth.create_operator("adam", "admin", pool_ids=[data.pools["team-a"]])
    auth.logout()
    auth.login("vera")
    assert "Pool Team B: no routable account" in client.get("/admin/alerts/?tab=acknowledged").get_data(as_text=True)
    assert auth.post(f"/admin/alerts/{incident.id}/acknowledge").status_code == 403
    auth.logout()
    auth.login("adam")
    assert "Pool Team B" not in client.get("/admin/alerts/?tab=acknowledged").get_data(as_text=True)
    assert auth.post(f"/admin/alerts/{incident.id}/silence", {"minutes": "60"}).status_code == 404


def test_cards_offer_the_fix_and_act_in_place(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    html = client.get("/admin/accounts/").get_data(as_text=True)
    heidi = _card(html, data.accounts["heidi"])  # reauth_required in the paused research pool
    assert "The account must be signed in again." in heidi and "The pool is not active" not in heidi
    assert "Relink with OpenAI" in heidi and "Replace auth.json" in heidi
    assert "Refresh token" not in heidi and ">Pause<" not in heidi
    grace = _card(html, data.accounts["grace"])  # refresh_failed: a retry may still help
    assert "Relink with OpenAI" in grace and "Refresh token" in grace
    dave = _card(html, data.accounts["dave"])  # paused account: reactivate in place
    assert "Reactivate" in dave
    carol = _card(html, data.accounts["carol"])  # active, only in the paused research pool: resume it here
    assert "Pool research is not active. Resume the pool to route." in carol and "Resume pool research" in carol
    back_here = f"/admin/accounts/#account-{data.accounts['carol']}"
    answer = auth.post(f"/admin/pools/{data.pools['research']}/resume", {"back": back_here}, page="/admin/accounts/")
    assert answer.status_code == 302 and answer.headers["Location"] == back_here
    assert "Routable in research" in _card(
        client.get("/admin/accounts/").get_data(as_text=True), data.accounts["carol"]
    )
    # POST from the card returns to the same list and card.
    alice = data.accounts["alice"]
    back = f"/admin/accounts/?q=ali#account-{alice}"
    answer = auth.post(f"/admin/accounts/{alice}/pause", {"back": back}, page="/admin/accounts/")
    assert answer.status_code == 302 and answer.headers["Location"] == back
    # Somewhere else than this admin is never a target.
    for evil in ("https://evil.example/admin/", "//evil.example/admin/", "/elsewhere", "/admin\\@evil"):
        answer = auth.post(f"/admin/accounts/{alice}/reactivate", {"back": evil}, page="/admin/accounts/")
        assert answer.headers["Location"].endswith(f"/admin/accounts/{alice}"), evil
        auth.post(f"/admin/accounts/{alice}/pause", page="/admin/accounts/")


def test_timestamps_show_their_zone(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    page = client.get(f"/admin/accounts/{data.accounts['alice']}").get_data(as_text=True)
    stamps = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: UTC)?", page)
    assert stamps and all(s.endswith("UTC") for s in stamps)
    assert re.search(r"resets in [0-9hmds ]+ \((\w{3} )?\d\d:\d\d UTC\)", page)


def test_escalation_clears_acknowledgement_and_silence_holds_notifications(core_ctx: CoreContext) -> None:
    now = utcnow()
    owner = Actor(ActorType.OPERATOR, "owner")

    def signals(severity: Severity) -> list[Signal]:
        return [Signal("pool_low_routable", "pool:1", severity, "Pool X: 1 routable", "impact", "check", {})]

    with core_ctx.session_factory.begin() as session:
        apply_signals(session, signals(Severity.WATCH), now, cooldown=dt.timedelta(0), channels=["webhook"])
        row = session.scalar(select(AlertIncident))
        assert row is not None
        assert incidents.acknowledge(session, row, actor=owner, now=now)
        assert not incidents.acknowledge(session, row, actor=owner, now=now)  # once
        assert incidents.silence(session, row, dt.timedelta(hours=1), actor=owner, now=now)
        assert not incidents.silence(session, row, dt.timedelta(days=30), actor=owner, now=now)  # too long
        queued = apply_signals(session, signals(Severity.DEGRADED), now, cooldown=dt.timedelta(0), channels=["webhook"])
        assert queued.escalated == [row.id] and queued.queued == 0  # silenced: nothing sent
        assert row.acknowledged_at is None and row.acknowledged_by is None  # worse: needs a new look
        apply_signals(session, [], now, cooldown=dt.timedelta(0), channels=["webhook"])
        assert row.status == "resolved"
        assert not incidents.acknowledge(session, row, actor=owner, now=now)
        deliveries = session.scalars(select(AlertDelivery.event)).all()
    assert deliveries == ["opened"]


def test_scheduler_and_admin_name_the_same_jobs() -> None:
    from scheduler.jobs import JOBS

    assert tuple(spec.job_id for spec in JOBS) == jobs.JOB_IDS


def test_run_requests_run_once_and_are_marked(core_ctx: CoreContext) -> None:
    calls: list[dt.datetime] = []

    def job(now: dt.datetime) -> dict[str, int]:
        calls.append(now)
        return {"refreshed": 1}

    factory = core_ctx.session_factory
    with factory.begin() as session:
        assert jobs.request_run(session, "refresh_due_tokens", "owner", utcnow()) is not None
        assert jobs.request_run(session, "refresh_due_tokens", "owner", utcnow()) is None  # already waiting
        assert jobs.request_run(session, "housekeeping", "owner", utcnow()) is not None
    with factory.begin() as session, pytest.raises(ValueError, match="unknown job"):
        jobs.request_run(session, "drop_tables", "owner", utcnow())
    done = jobs.run_requests(factory, {"refresh_due_tokens": job}, "test:1")
    assert done == [("refresh_due_tokens", "success")] and len(calls) == 1
    assert jobs.run_requests(factory, {"refresh_due_tokens": job}, "test:1") == []  # picked: never again
    with factory() as session:
        run = session.scalar(select(JobRun).where(JobRun.job_id == "refresh_due_tokens"))
        requests = session.scalars(select(JobRequest).order_by(JobRequest.id)).all()
        assert run is not None and run.requested_by == "owner" and run.counts == {"refreshed": 1}
        assert requests[0].run_id == run.id and requests[0].picked_at is not None
        assert requests[1].picked_at is not None and requests[1].run_id is None  # unknown to this scheduler


def _job_run(ctx: CoreContext, job_id: str, counts: dict[str, int], outcome: str = "success") -> None:
    now = utcnow()
    with ctx.session_factory.begin() as session:
        session.add(
            JobRun(job_id=job_id, slot=now, started_at=now, finished_at=now, outcome=outcome, counts=counts, runner="t")
        )


def test_jobs_page_says_what_a_run_did_and_owners_run_now(
    auth: Auth, client: FlaskClient, core_ctx: CoreContext
) -> None:
    auth.bootstrap()
    auth.login()
    _job_run(core_ctx, "refresh_due_tokens", {"checked": 9, "refreshed": 3, "failed": 0, "reauth_required": 6})
    page = client.get("/admin/jobs/").get_data(as_text=True)
    row = re.search(r'<tr id="job-refresh_due_tokens".*?</tr>', page, re.S)
    assert row is not None
    assert 'class="state s-warning" data-job-level>warning<' in row.group(0)
    assert "moved 6 accounts to reauth_required, refreshed 3" in row.group(0)
    assert "Run now" in row.group(0)
    answer = auth.post("/admin/jobs/refresh_due_tokens/run", page="/admin/jobs/")
    assert answer.status_code == 302
    assert "waiting for the scheduler" in client.get("/admin/jobs/").get_data(as_text=True)
    assert auth.post("/admin/jobs/refresh_due_tokens/run", page="/admin/jobs/").status_code == 302  # no second row
    assert auth.post("/admin/jobs/drop_tables/run", page="/admin/jobs/").status_code == 404
    with core_ctx.session_factory() as session:
        assert len(session.scalars(select(JobRequest)).all()) == 1
        audit = session.scalar(select(AuditEvent).where(AuditEvent.action == "job.run_requested"))
        assert audit is not None and audit.actor_label == "owner" and audit.target_id == "refresh_due_tokens"
    auth.create_operator("adam", "admin")
    auth.logout()
    auth.login("adam")
    assert "Run now" not in client.get("/admin/jobs/").get_data(as_text=True)
    assert auth.post("/admin/jobs/poll_usage/run", page="/admin/jobs/").status_code == 403


def test_activity_health_reflects_what_routes_now(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    _outage(core_ctx, data)
    page = client.get(f"/admin/pools/{data.pools['team-b']}/activity?span=24h").get_data(as_text=True)
    assert "0 of 4 accounts can route now" in page
    healths = re.findall(r'class="state s-(\w+)" data-health', page)
    assert healths and set(healths) == {"blocked"}
    assert "out now" in page


def test_resolved_incidents_have_their_tab(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    data = _seed(core_ctx)
    auth.bootstrap()
    auth.login()
    _outage(core_ctx, data)
    evaluate(core_ctx.session_factory, utcnow())
    with core_ctx.session_factory.begin() as session:
        set_setting(session, "alert_cooldown_seconds", 0, actor=SYSTEM)
        for label in TEAM_B:
            account = session.get(UpstreamAccount, data.accounts[label])
            assert account is not None
            account.state = AccountState.ACTIVE
    evaluate(core_ctx.session_factory, utcnow())
    assert "Pool Team B: no routable account" not in client.get("/admin/").get_data(as_text=True)
    resolved = client.get("/admin/alerts/?tab=resolved").get_data(as_text=True)
    assert "Pool Team B: no routable account" in resolved and 'data-state="resolved"' in resolved
    assert "/acknowledge" not in resolved and "/silence" not in resolved  # nothing to act on
    assert client.get("/admin/alerts/?tab=nonsense").status_code == 200  # falls back to open
