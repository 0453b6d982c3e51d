"""Alert delivery end to end: a signed webhook to a local HTTP receiver (signature verified, retried after a
500), email through a local SMTP server with login, and a canary scan proving alert text carries no secrets.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from pooler.alerts import evaluate as alert_eval
from pooler.alerts.webhook import SIGNATURE_HEADER, verify
from pooler.models import AlertDelivery, AlertIncident, PoolKey, RequestLog, UpstreamAccount
from pooler.services.credentials import store_token
from pooler.states import SecretKind
from tests.support.lifecycle_fixtures import make_box
from tests.support.processes import free_port
from tests.unit.test_alerts_db import Factory, add_pool, header_window, set_settings, set_states
from tests.unit.test_alerts_db import alerts_db_url as alerts_db_url
from tests.unit.test_alerts_db import factory as factory

WEBHOOK_SECRET = "whsec-CANARY-7f3a9c1e"
SMTP_PASSWORD = "smtp-CANARY-b41d22"


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Answers to give, in order; 200 once exhausted."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(url=f"http://127.0.0.1:{port}/hooks/pooler")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with state.lock:
                state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class MailSink:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == SMTP_PASSWORD.encode()
        if ok:
            self.logins.append(auth_data.login)
        return AuthResult(success=ok)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, MailSink]]:
    sink = MailSink()
    port = free_port()
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, authenticator=sink.authenticate, auth_require_tls=False
    )
    controller.start()  # returns once the server answers
    yield port, sink
    controller.stop()


def now() -> dt.datetime:
    # Real time: the receiver checks the signature's timestamp against its own clock.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def run(f: Factory, moment: dt.datetime) -> dict[str, int]:
    return alert_eval.run(f, make_box(), moment)


def test_signed_webhook_is_received_and_verified(factory: Factory, receiver: Receiver) -> None:
    set_settings(factory, make_box(), alert_webhook_url=receiver.url, alert_webhook_secret=WEBHOOK_SECRET)
    set_settings(factory, alert_cooldown_seconds=0, alert_min_routable_accounts=1)
    pool_id, ids = add_pool(factory, "Team Hooks", ["reauth_required"])
    t0 = now()
    counts = run(factory, t0)
    assert counts["delivered"] >= 1 and counts.get("failed", 0) == 0
    bodies = []
    for headers, body in receiver.requests:
        assert verify(WEBHOOK_SECRET, headers[SIGNATURE_HEADER], body)
        assert not verify("another-secret", headers[SIGNATURE_HEADER], body)
        assert not verify(WEBHOOK_SECRET, headers[SIGNATURE_HEADER], body + b" ")
        assert headers["x-pooler-event"] == "incident.opened"
        bodies.append(json.loads(body))
    outage = next(b for b in bodies if b["incident"]["rule"] == "pool_no_routable")
    assert outage["type"] == "incident.opened"
    assert outage["incident"]["severity"] == "outage"
    assert outage["incident"]["subject"] == f"pool:{pool_id}"
    assert outage["incident"]["signals"]["pool"] == "Team Hooks"
    assert outage["incident"]["next_check"]

    receiver.requests.clear()
    set_states(factory, ids, "active")
    run(factory, t0 + dt.timedelta(seconds=5))
    resolved = [json.loads(b) for _, b in receiver.requests]
    assert {b["type"] for b in resolved} == {"incident.resolved"}
    assert any(b["incident"]["rule"] == "pool_no_routable" and b["incident"]["resolved_at"] for b in resolved)


def test_webhook_retries_after_a_500_with_backoff(factory: Factory, receiver: Receiver) -> None:
    set_settings(factory, make_box(), alert_webhook_url=receiver.url, alert_webhook_secret=WEBHOOK_SECRET)
    add_pool(factory, "Retry Pool", [])  # an active pool with no accounts: one outage incident
    receiver.statuses = [500]
    t0 = now()
    counts = run(factory, t0)
    assert counts["retrying"] == 1 and counts.get("delivered", 0) == 0
    with factory() as s:
        delivery = s.scalars(select(AlertDelivery)).one()
        assert delivery.status == "pending" and delivery.attempts == 1 and delivery.last_error == "http_500"
        assert delivery.next_attempt_at == t0 + alert_eval.backoff(1)

    assert run(factory, t0 + dt.timedelta(seconds=10)).get("delivered", 0) == 0  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    counts = run(factory, t0 + alert_eval.backoff(1))
    assert counts["delivered"] == 1
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first[0]["x-pooler-delivery"] == second[0]["x-pooler-delivery"]  # same delivery id: receivers dedupe
    assert verify(WEBHOOK_SECRET, second[0][SIGNATURE_HEADER], second[1])
    with factory() as s:
        delivery = s.scalars(select(AlertDelivery)).one()
        assert delivery.status == "delivered" and delivery.attempts == 2


def test_webhook_gives_up_on_a_permanent_error(factory: Factory, receiver: Receiver) -> None:
    set_settings(factory, make_box(), alert_webhook_url=receiver.url, alert_webhook_secret=WEBHOOK_SECRET)
    add_pool(factory, "Gone Pool", [])
    receiver.statuses = [410]
    assert run(factory, now())["failed"] == 1
    assert run(factory, now() + dt.timedelta(hours=2)).get("delivered", 0) == 0
    assert len(receiver.requests) == 1


def test_email_alert_through_local_smtp(factory: Factory, smtp_server: tuple[int, MailSink]) -> None:
    port, sink = smtp_server
    set_settings(factory, make_box(), smtp_password=SMTP_PASSWORD)
    set_settings(
        factory,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_username="alerts",
        alert_email_to="ops@example.test, oncall@example.test",
        alert_email_from="pooler@example.test",
    )
    add_pool(factory, "Mail Pool", ["paused", "paused"])
    counts = run(factory, now())
    assert counts["delivered"] >= 1 and counts.get("retrying", 0) == 0
    assert sink.logins == [b"alerts"]
    mails = [message_from_bytes(m) for m in sink.messages]
    outage = next(m for m in mails if "no routable account" in m["Subject"])
    assert outage["Subject"].startswith("[pooler outage] Pool Mail Pool")
    assert outage["To"] == "ops@example.test, oncall@example.test"
    text = outage.get_payload(decode=True).decode()
    assert "Status: outage, open" in text and "Next check:" in text and "Privacy:" in text


def test_alert_text_carries_no_secrets(factory: Factory, receiver: Receiver, smtp_server: tuple[int, MailSink]) -> None:
    """Canary scan: plant secrets and identifiers everywhere, trigger every rule, search all alert output."""
    box = make_box()
    port, sink = smtp_server
    set_settings(factory, box, alert_webhook_secret=WEBHOOK_SECRET, smtp_password=SMTP_PASSWORD)
    set_settings(
        factory,
        alert_webhook_url=receiver.url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_username="alerts",
        alert_email_to="ops@example.test",
        alert_key_error_threshold=1,
        alert_quota_percent=10.0,
        alert_min_routable_accounts=5,
    )
    canaries = {
        "email": "canary.person@secret-mail.test",
        "account_id": "acct-CANARY-0d9e",
        "user_id": "user-CANARY-51aa",
        "access": "eyJ-CANARY-access-token",
        "refresh": "rt_CANARY_refresh",
        "key_hash": "c0ffee" * 10 + "cafe",
    }
    pool_id, ids = add_pool(factory, "Canary Pool", ["reauth_required", "active"])
    with factory.begin() as s:
        account = s.get_one(UpstreamAccount, ids[1])
        account.email, account.chatgpt_account_id = canaries["email"], canaries["account_id"]
        account.chatgpt_user_id = canaries["user_id"]
        store_token(s, box, account, SecretKind.ACCESS_TOKEN, canaries["access"])
        store_token(s, box, account, SecretKind.REFRESH_TOKEN, canaries["refresh"])
        s.add(PoolKey(pool_id=pool_id, label="canary key", prefix="cpk_canary01", key_hash=canaries["key_hash"]))
    t0 = now()
    with factory.begin() as s:
        s.add(header_window(ids[1], 300, 50.0, resets_at=t0 + dt.timedelta(hours=1), observed_at=t0))
        s.add(
            RequestLog(
                created_at=t0,
                request_id="canary-401",
                pool_id=pool_id,
                key_prefix="cpk_canary01",
                route_family="responses",
                method="POST",
                status_code=401,
                model="gpt-canary",
            )
        )
    run(factory, t0)
    with factory() as s:
        rules = {i.rule for i in s.scalars(select(AlertIncident))}
        rows = [json.dumps(i.details) + i.title for i in s.scalars(select(AlertIncident))]
    assert {"accounts_reauth_required", "pool_low_routable", "quota_above_threshold", "key_errors_spike"} <= rules
    outputs = [body.decode() for _, body in receiver.requests]
    outputs += [m.decode(errors="replace") for m in sink.messages]
    outputs += rows
    assert receiver.requests and sink.messages
    blob = "\n".join(outputs)
    assert "cpk_canary01" in blob and "Canary Pool" in blob  # metadata is there...
    for name, value in {**canaries, "webhook_secret": WEBHOOK_SECRET, "smtp_password": SMTP_PASSWORD}.items():
        assert value not in blob, f"{name} leaked into alert output"
    with factory() as s:
        labels = [a.label for a in s.scalars(select(UpstreamAccount))]
    assert not any(label in blob for label in labels)  # account labels can be email local parts: never sent
