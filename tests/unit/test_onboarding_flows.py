"""Onboarding flow service on SQLite and PostgreSQL against the simulator's OAuth endpoints: every flow error
code, link/relink/device/invite success, and that nothing secret is stored in clear."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from pooler import settings
from pooler.audit import Actor
from pooler.crypto.hashing import KeyedHasher
from pooler.crypto.keyring import new_key_material, parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.errors import NotFoundError
from pooler.models import AuditEvent, OAuthFlow, OAuthInvite, PoolAssignment, UpstreamAccount, utcnow
from pooler.onboarding import flows, invites
from pooler.onboarding.errors import OnboardingError
from pooler.onboarding.priming import prime_account
from pooler.onboarding.types import (
    DevicePending,
    LinkOutcome,
    OAuthConfig,
    OperatorScope,
    Purpose,
    Requester,
)
from pooler.services import accounts, pools
from pooler.services import operators as ops
from pooler.services.credentials import read_token
from pooler.states import AccountState, ActorType, InviteStatus, SecretKind
from tests.support.dbscan import dump_all_tables
from tests.support.processes import free_port
from tests.support.simulator import RunningSimulator, _module_simulator  # noqa: F401
from tests.support.simulator import shared_simulator as shared_simulator

ACTOR = Actor(ActorType.CLI, "tester")
URL_SETTINGS = ("upstream_base_url", "auth_base_url")


@dataclass
class Env:
    factory: sessionmaker[Session]
    engine: Engine
    box: SecretBox
    hasher: KeyedHasher
    http: httpx.Client
    config: OAuthConfig
    sim: RunningSimulator
    pool_id: int
    operator: OperatorScope
    binding: str

    @property
    def me(self) -> Requester:
        return Requester(self.operator, self.binding)

    def new_pool(self) -> int:
        with self.factory.begin() as s:
            return pools.create_pool(s, name=f"ob-{secrets.token_hex(4)}", actor=ACTOR).id

    def new_operator(self, role: str, pool_ids: list[int] | None = None) -> OperatorScope:
        with self.factory.begin() as s:
            op = ops.create_operator(
                s, username=f"op{secrets.token_hex(4)}", password="correct horse battery", role=role, pool_ids=pool_ids
            )
            return OperatorScope(op.id, op.username, op.role, frozenset(pool_ids or ()))

    def start(self, purpose: Purpose = Purpose.LINK, account_id: int | None = None, **kw: object) -> tuple[int, str]:
        with self.factory.begin() as s:
            started = flows.start_browser_flow(
                s,
                self.box,
                self.hasher,
                self.config,
                operator=kw.get("operator", self.operator),  # type: ignore[arg-type]
                binding=self.binding,
                purpose=purpose,
                pool_id=kw.get("pool_id", None if purpose == Purpose.RELINK else self.pool_id),  # type: ignore[arg-type]
                account_id=account_id,
            )
        return started.flow_id, started.authorize_url

    def start_device(self, now: dt.datetime) -> DevicePending:
        """The operator starts a device-code link into the env's pool."""
        with self.factory.begin() as s:
            return flows.start_device_flow(
                s,
                self.box,
                self.hasher,
                self.http,
                self.config,
                operator=self.operator,
                binding=self.binding,
                purpose=Purpose.LINK,
                pool_id=self.pool_id,
                now=now,
            )

    def consent(self, authorize_url: str, login: str) -> str:
        """What the browser ends on: the simulator's redirect to localhost:1455 (never followed)."""
        response = self.http.get(authorize_url + "&" + urlencode({"login_hint": login}))
        assert response.status_code == 302
        return response.headers["location"]

    def complete(self, flow_id: int, callback: str, requester: Requester | None = None) -> LinkOutcome:
        with self.factory() as s:
            try:
                outcome = flows.complete_browser_flow(
                    s,
                    self.box,
                    self.hasher,
                    self.http,
                    self.config,
                    flow_id=flow_id,
                    requester=requester or self.me,
                    callback_url=callback,
                )
            finally:
                s.commit()  # the flow service's contract: failures are recorded, so commit either way
        return outcome

    def link(self, login: str) -> LinkOutcome:
        flow_id, url = self.start()
        return self.complete(flow_id, self.consent(url, login))

    def flow(self, flow_id: int) -> OAuthFlow:
        with self.factory() as s:
            flow = s.get(OAuthFlow, flow_id)
            assert flow is not None
            s.expunge(flow)
            return flow


@pytest.fixture
def env(session_factory: sessionmaker[Session], engine: Engine, shared_simulator: RunningSimulator) -> Iterator[Env]:
    box = SecretBox(parse_keyring(f"k1:{new_key_material()}"))
    hasher = KeyedHasher(secrets.token_bytes(32))
    with httpx.Client(timeout=10) as http:
        e = Env(
            session_factory,
            engine,
            box,
            hasher,
            http,
            OAuthConfig(shared_simulator.base_url, "app_test"),
            shared_simulator,
            0,
            OperatorScope(0, "", "owner"),
            secrets.token_urlsafe(16),
        )
        e.pool_id = e.new_pool()
        e.operator = e.new_operator("owner")
        # The scheduler services (priming) read these settings; point them at the simulator for this test only.
        with session_factory.begin() as s:
            for name in URL_SETTINGS:
                settings.set_setting(s, name, shared_simulator.base_url, actor=ACTOR)
        try:
            yield e
        finally:
            with session_factory.begin() as s:
                for name in URL_SETTINGS:
                    settings.reset_setting(s, name, actor=ACTOR)


def _acct() -> str:
    return f"acct-{secrets.token_hex(5)}"


def _err(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(OnboardingError) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value.code


def test_browser_link_stores_sealed_credentials_and_assigns(env: Env) -> None:
    login = _acct()
    flow_id, url = env.start()
    callback = env.consent(url, login)
    outcome = env.complete(flow_id, callback)
    assert outcome.created and outcome.purpose == "link" and outcome.state == AccountState.ACTIVE
    with env.factory() as s:
        account = s.get(UpstreamAccount, outcome.account_id)
        assert account is not None and account.chatgpt_account_id == login
        assert account.usage_poll_not_before is None  # the scheduler primes it at its next tick
        assert s.scalar(select(PoolAssignment).where(PoolAssignment.account_id == account.id)) is not None
        access = read_token(s, env.box, account.id, SecretKind.ACCESS_TOKEN)
        refresh = read_token(s, env.box, account.id, SecretKind.REFRESH_TOKEN)
        actions = set(s.scalars(select(AuditEvent.action).where(AuditEvent.target_id == str(account.id))))
        assert {"account.import", "account.oauth_link"} <= actions
    assert access and refresh
    assert env.flow(flow_id).status == "completed"
    # Canary: nothing of the code, state, verifier, callback URL or tokens is stored in clear.
    code = callback.split("code=")[1].split("&")[0]
    blob = dump_all_tables(env.engine)
    for canary in (code, callback, access, refresh, url.split("state=")[1].split("&")[0]):
        assert canary.encode() not in blob
    # Priming through the scheduler's services records quota evidence and keeps the account active.
    assert prime_account(env.factory, env.box, env.http, outcome.account_id, actor_label="t") == "ok"


def test_paste_mistakes_leave_the_flow_pending(env: Env) -> None:
    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    for bad, code in [
        ("nonsense", "invalid_callback_url"),
        (callback.replace("localhost:1455", "localhost:9999"), "invalid_callback_origin"),
        (callback + "&code=again", "duplicate_callback_param"),
        (callback.split("&state=")[0], "missing_state"),
        (callback.replace("state=", "state=x"), "invalid_state"),
    ]:
        assert _err(env.complete, flow_id, bad) == code
        assert env.flow(flow_id).status == "pending"
    assert env.complete(flow_id, callback).created


def test_provider_denied_and_missing_result_fail_the_flow(env: Env) -> None:
    flow_id, url = env.start()
    state = env.consent(url, _acct()).split("state=")[1]
    base = "http://localhost:1455/auth/callback?"
    assert _err(env.complete, flow_id, f"{base}error=access_denied&state={state}") == "provider_denied"
    assert env.flow(flow_id).error_code == "provider_denied"
    assert _err(env.complete, flow_id, f"{base}code=x&state={state}") == "flow_not_pending"
    flow_id, url = env.start()
    state = env.consent(url, _acct()).split("state=")[1]
    assert _err(env.complete, flow_id, f"{base}state={state}") == "missing_callback_result"
    assert env.flow(flow_id).status == "failed"


def test_expired_stale_and_not_pending(env: Env) -> None:
    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    with env.factory.begin() as s:
        flow = s.get(OAuthFlow, flow_id)
        assert flow is not None
        flow.expires_at = utcnow() - dt.timedelta(seconds=1)
    assert _err(env.complete, flow_id, callback) == "expired_flow"
    assert env.flow(flow_id).status == "expired"
    assert _err(env.complete, flow_id, callback) == "expired_flow"

    old_id, old_url = env.start()
    old_callback = env.consent(old_url, _acct())
    new_id, _ = env.start()  # same operator, same target: supersedes the first
    assert _err(env.complete, old_id, old_callback) == "stale_flow"
    assert env.flow(new_id).status == "pending"

    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    env.complete(flow_id, callback)
    assert _err(env.complete, flow_id, callback) == "flow_not_pending"


def test_token_exchange_failed(env: Env) -> None:
    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    env.sim.client.add_fault("status", status=400, route="oauth_token", body={"error": {"code": "invalid_grant"}})
    assert _err(env.complete, flow_id, callback) == "token_exchange_failed"
    assert env.flow(flow_id).error_code == "token_exchange_failed"
    # A code that was already spent fails the same way (the simulator refuses reuse).
    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    env.complete(flow_id, callback)
    flow2, url2 = env.start()
    state2 = env.consent(url2, _acct()).split("state=")[1]
    spent = callback.split("code=")[1].split("&")[0]
    assert _err(env.complete, flow2, f"http://localhost:1455/auth/callback?code={spent}&state={state2}") == (
        "token_exchange_failed"
    )


def test_identity_conflict_on_link_of_a_live_account(env: Env) -> None:
    login = _acct()
    first = env.link(login)
    flow_id, url = env.start(pool_id=env.new_pool())
    assert _err(env.complete, flow_id, env.consent(url, login)) == "identity_conflict"
    # A deleted account may be linked again: it is revived with fresh credentials (epoch bumped).
    with env.factory.begin() as s:
        account = s.get(UpstreamAccount, first.account_id)
        assert account is not None
        account.state, account.deleted_at = AccountState.DELETED, utcnow()
        epoch = account.credential_epoch
    again = env.link(login)
    assert again.account_id == first.account_id and not again.created
    with env.factory() as s:
        account = s.get(UpstreamAccount, first.account_id)
        assert account is not None and account.deleted_at is None and account.credential_epoch == epoch + 1


def test_relink_matching_recovers_reauth_required_and_mismatch_is_refused(env: Env) -> None:
    login = _acct()
    linked = env.link(login)
    with env.factory.begin() as s:
        account = s.get(UpstreamAccount, linked.account_id)
        assert account is not None
        account.state, account.state_reason = AccountState.REAUTH_REQUIRED, "refresh_token_reused"
        epoch = account.credential_epoch
    flow_id, url = env.start(Purpose.RELINK, linked.account_id)
    assert _err(env.complete, flow_id, env.consent(url, _acct())) == "identity_mismatch"
    with env.factory() as s:
        account = s.get(UpstreamAccount, linked.account_id)
        assert account is not None and account.credential_epoch == epoch  # nothing replaced
    flow_id, url = env.start(Purpose.RELINK, linked.account_id)
    outcome = env.complete(flow_id, env.consent(url, login))
    assert outcome.purpose == "relink" and not outcome.created and outcome.state == AccountState.ACTIVE
    with env.factory() as s:
        account = s.get(UpstreamAccount, linked.account_id)
        assert account is not None and account.credential_epoch == epoch + 1


def test_unauthorized_pool(env: Env) -> None:
    other_pool = env.new_pool()
    admin = env.new_operator("admin", [env.pool_id])
    viewer = env.new_operator("viewer")
    for op, pool in [(admin, other_pool), (viewer, env.pool_id)]:
        with env.factory() as s, pytest.raises(OnboardingError) as info:
            flows.start_browser_flow(
                s, env.box, env.hasher, env.config, operator=op, binding="b", purpose=Purpose.LINK, pool_id=pool
            )
        assert info.value.code == "unauthorized_pool"
        with env.factory() as s, pytest.raises(OnboardingError) as info:
            invites.create_invite(s, env.hasher, operator=op, pool_id=pool, label="x", actor=ACTOR)
        assert info.value.code == "unauthorized_pool"
    # Rights lost between start and completion are checked again.
    flow_id, url = env.start(operator=admin)
    callback = env.consent(url, _acct())
    demoted = OperatorScope(admin.id, admin.username, "admin", frozenset())
    assert _err(env.complete, flow_id, callback, Requester(demoted, env.binding)) == "unauthorized_pool"


def test_only_the_starting_operator_and_session_can_complete(env: Env) -> None:
    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    other = env.new_operator("owner")
    for requester in (Requester(other, env.binding), Requester(env.operator, "another-browser")):
        with pytest.raises(NotFoundError):
            env.complete(flow_id, callback, requester)
    assert env.complete(flow_id, callback).created


def _poll(env: Env, flow_id: int, requester: Requester, now: dt.datetime) -> DevicePending | LinkOutcome:
    with env.factory() as s:
        try:
            return flows.poll_device_flow(
                s, env.box, env.hasher, env.http, env.config, flow_id=flow_id, requester=requester, now=now
            )
        finally:
            s.commit()


def test_device_flow_respects_interval_and_links(env: Env) -> None:
    login = _acct()
    env.sim.client.configure(device_auto_approve_polls=0)
    now = utcnow()
    started = env.start_device(now)
    assert started.verification_url.endswith("/codex/device") and started.interval == 1
    polls = lambda: len(env.sim.client.journal(route="device"))  # noqa: E731
    before = polls()
    assert isinstance(_poll(env, started.flow_id, env.me, now), DevicePending)
    assert polls() == before  # inside the interval: no upstream call
    pending = _poll(env, started.flow_id, env.me, now + dt.timedelta(seconds=1))
    assert isinstance(pending, DevicePending) and polls() == before + 1  # 403 = still pending
    env.sim.client.approve_device(started.user_code, login)
    done = _poll(env, started.flow_id, env.me, now + dt.timedelta(seconds=3))
    assert isinstance(done, LinkOutcome) and done.created
    with env.factory() as s:
        account = s.get(UpstreamAccount, done.account_id)
        assert account is not None and account.chatgpt_account_id == login
    # After 15 minutes a pending device flow is expired.
    late = env.start_device(now)
    with pytest.raises(OnboardingError) as info:
        _poll(env, late.flow_id, env.me, now + dt.timedelta(minutes=15, seconds=1))
    assert info.value.code == "expired_flow"


def test_device_flow_upstream_failure(env: Env) -> None:
    now = utcnow()
    started = env.start_device(now)
    env.sim.client.add_fault("status", status=500, route="device")
    with pytest.raises(OnboardingError) as info:
        _poll(env, started.flow_id, env.me, now + dt.timedelta(seconds=2))
    assert info.value.code == "token_exchange_failed"


def _start_invite_device(env: Env, token: str, invitee: Requester, now: dt.datetime) -> DevicePending:
    """What the public invite page does: the invitee (no operator) starts a device flow for the invite."""
    with env.factory.begin() as s:
        found = invites.find_usable_invite(s, env.hasher, token)
        return flows.start_device_flow(
            s,
            env.box,
            env.hasher,
            env.http,
            env.config,
            operator=None,
            binding=invitee.binding,
            purpose=Purpose.INVITE,
            pool_id=None,
            invite=found,
            now=now,
        )


def test_invite_single_use_states(env: Env) -> None:
    login = _acct()
    with env.factory.begin() as s:
        invite, token = invites.create_invite(
            s, env.hasher, operator=env.operator, pool_id=env.pool_id, label="for Dana", actor=ACTOR
        )
        invite_id = invite.id
    with env.factory() as s:
        row = s.get(OAuthInvite, invite_id)
        assert row is not None and row.token_hash != token and token not in row.token_hash
        found = invites.find_usable_invite(s, env.hasher, token)
        assert found is not None and found.id == invite_id
        assert invites.find_usable_invite(s, env.hasher, token + "x") is None
    invitee = Requester(None, "invitee-browser", invite_id)
    now = utcnow()
    started = _start_invite_device(env, token, invitee, now)
    env.sim.client.approve_device(started.user_code, login)
    done = _poll(env, started.flow_id, invitee, now + dt.timedelta(seconds=2))
    assert isinstance(done, LinkOutcome) and done.purpose == "invite"
    with env.factory() as s:
        row = s.get(OAuthInvite, invite_id)
        assert row is not None and row.status == InviteStatus.ACCEPTED and row.account_id == done.account_id
        assert invites.find_usable_invite(s, env.hasher, token) is None  # single use
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "invite.accept")) is not None
    # Revoked and expired invites.
    with env.factory.begin() as s:
        revoked, token2 = invites.create_invite(
            s, env.hasher, operator=env.operator, pool_id=env.pool_id, label="r", actor=ACTOR
        )
        invites.revoke_invite(s, env.operator, revoked.id, actor=ACTOR)
        expired, token3 = invites.create_invite(
            s, env.hasher, operator=env.operator, pool_id=env.pool_id, label="e", actor=ACTOR
        )
        expired.expires_at = utcnow() - dt.timedelta(seconds=1)
    with env.factory() as s:
        assert invites.find_usable_invite(s, env.hasher, token2) is None
        assert invites.find_usable_invite(s, env.hasher, token3) is None
        row = s.get(OAuthInvite, expired.id)
        assert row is not None and invites.effective_status(row, utcnow()) == "expired"
    assert token.encode() not in dump_all_tables(env.engine)


def test_priming_failure_is_shown_honestly(env: Env) -> None:
    login = _acct()
    linked = env.link(login)
    env.sim.client.upsert_account(login, revoked=True)
    outcome = prime_account(env.factory, env.box, env.http, linked.account_id, actor_label="t")
    assert outcome.startswith("refresh_")
    with env.factory() as s:
        account = s.get(UpstreamAccount, linked.account_id)
        assert account is not None and account.state == AccountState.REAUTH_REQUIRED


def test_link_reuses_the_accounts_service(env: Env) -> None:
    outcome = env.link(_acct())
    with env.factory() as s:
        summary = [a for a in accounts.list_accounts(s) if a.id == outcome.account_id]
        assert summary and summary[0].credential_epoch == 1


def test_invite_marked_expired_by_housekeeping_reads_as_expired_flow(env: Env) -> None:
    """Housekeeping sets a lapsed invite's status to `expired`; an invitee still polling must hear expired_flow."""
    with env.factory.begin() as s:
        invite, token = invites.create_invite(
            s, env.hasher, operator=env.operator, pool_id=env.pool_id, label="lapsing", actor=ACTOR
        )
        invite_id = invite.id
    invitee = Requester(None, "invitee-lapsing", invite_id)
    now = utcnow()
    started = _start_invite_device(env, token, invitee, now)
    with env.factory.begin() as s:
        row = s.get(OAuthInvite, invite_id)
        assert row is not None
        row.status = InviteStatus.EXPIRED
    with pytest.raises(OnboardingError) as info:
        _poll(env, started.flow_id, invitee, now + dt.timedelta(seconds=2))
    assert info.value.code == "expired_flow"


def test_unreachable_auth_server_is_not_a_refusal(env: Env) -> None:
    """Connection refused and timeouts say the auth server was never reached, unlike an answer that refuses."""
    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    closed = replace(env, config=OAuthConfig(f"http://127.0.0.1:{free_port()}", "app_test"))
    assert _err(closed.complete, flow_id, callback) == "auth_server_unreachable"
    assert env.flow(flow_id).error_code == "auth_server_unreachable"
    with pytest.raises(OnboardingError) as info:
        closed.start_device(utcnow())
    assert info.value.code == "auth_server_unreachable"
    assert "Could not reach auth.openai.com" in str(info.value)

    flow_id, url = env.start()
    callback = env.consent(url, _acct())
    env.sim.client.add_fault("delay", seconds=2, route="oauth_token")
    impatient = replace(env, http=httpx.Client(timeout=0.2, follow_redirects=False))
    assert _err(impatient.complete, flow_id, callback) == "auth_server_unreachable"
    impatient.http.close()
