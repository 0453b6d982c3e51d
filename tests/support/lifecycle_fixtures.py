"""Helpers for lifecycle tests: a throwaway secret box, accounts with sealed tokens, a fake OAuth server."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import threading
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pooler.crypto.keyring import Keyring
from pooler.crypto.secretbox import SecretBox
from pooler.models import AuditEvent, UpstreamAccount
from pooler.services.credentials import store_token
from pooler.states import SecretKind

_BOX = SecretBox(Keyring(keys={"k1": os.urandom(32)}, current_id="k1"))


def make_box() -> SecretBox:
    """One box per test session: every test's accounts share the session databases, and jobs open them all."""
    return _BOX


def fake_jwt(exp: dt.datetime, **claims: Any) -> str:
    def enc(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'none'})}.{enc({'exp': int(exp.timestamp()), **claims})}.sig"


def create_account(
    factory: sessionmaker[Session],
    box: SecretBox,
    *,
    access_token: str | None = None,
    refresh_token: str | None = "rt_initial",
    expires_at: dt.datetime | None = None,
    last_refresh_at: dt.datetime | None = None,
    state: str = "active",
    chatgpt_account_id: str | None = None,
) -> int:
    now = dt.datetime.now(dt.UTC)
    expires_at = expires_at or now + dt.timedelta(days=9)
    with factory.begin() as session:
        account = UpstreamAccount(
            label=f"acct-{secrets.token_hex(3)}",
            chatgpt_account_id=chatgpt_account_id or f"acct-{secrets.token_hex(6)}",
            state=state,
            state_changed_at=now,
            access_token_expires_at=expires_at,
            last_refresh_at=last_refresh_at or now - dt.timedelta(days=1),
        )
        session.add(account)
        session.flush()
        store_token(session, box, account, SecretKind.ACCESS_TOKEN, access_token or fake_jwt(expires_at))
        if refresh_token is not None:
            store_token(session, box, account, SecretKind.REFRESH_TOKEN, refresh_token)
        return int(account.id)


def state_events(factory: sessionmaker[Session], account_id: int) -> list[tuple[str, str, str | None]]:
    """(from, to, reason) of the account's state-change audit events, oldest first."""
    with factory() as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target_type == "account", AuditEvent.target_id == str(account_id))
            .where(AuditEvent.action == "account.state_change")
            .order_by(AuditEvent.id)
        )
        return [(e.details["from"], e.details["to"], e.details["reason"]) for e in rows if e.details]


class FakeOAuth:
    """Rotating refresh tokens with reuse detection, like the real server; thread-safe; counts token calls."""

    def __init__(self, valid: str = "rt_initial", ttl: dt.timedelta = dt.timedelta(days=10)) -> None:
        self.valid = valid
        self.ttl = ttl
        self.calls = 0
        self.used: list[str] = []
        self.next_response: httpx.Response | None = None
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()
        self.entered = threading.Event()

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)  # lets a test hold the winner inside its token call
        with self.lock:
            self.calls += 1
            self.used.append(body["refresh_token"])
            if self.next_response is not None:
                return self.next_response
            if body["refresh_token"] != self.valid:
                return httpx.Response(401, json={"error": {"code": "refresh_token_reused"}})
            self.valid = f"rt_{secrets.token_hex(4)}"
            access = fake_jwt(dt.datetime.now(dt.UTC) + self.ttl, n=self.calls)
            return httpx.Response(200, json={"access_token": access, "refresh_token": self.valid})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))
