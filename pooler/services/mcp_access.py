"""MCP access: operator-owned bearer tokens and the two gates (instance-wide setting, per-operator switch).

A token is `mcp_<8 hex>_<secret>`: the first part is its public prefix (stored, shown, looked up), the whole
token is stored only as a keyed hash (purpose "mcp-token"). Access needs a live token of an enabled operator,
`mcp_enabled` on, and that operator's gate on; both gates are off by default, so creating a token alone grants
nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.crypto.hashing import KeyedHasher
from pooler.errors import NotFoundError
from pooler.models import McpOperatorGate, McpToken, Operator, utcnow
from pooler.settings import get_setting

TOKEN_PURPOSE = "mcp-token"
TOKEN_PREFIX = "mcp_"
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)
"""last_used_at is written at most once a minute per token: reads must not turn into a write per call."""


class Denied(StrEnum):
    MISSING = "missing_token"
    INVALID = "invalid_token"
    REVOKED = "revoked_token"
    OPERATOR_DISABLED = "operator_disabled"
    INSTANCE_GATE_OFF = "mcp_disabled"
    OPERATOR_GATE_OFF = "mcp_disabled_for_operator"

    @property
    def http_status(self) -> int:
        # Who you are is unknown (401) vs. known but not allowed (403).
        return 401 if self in (Denied.MISSING, Denied.INVALID, Denied.REVOKED) else 403


@dataclass(frozen=True)
class McpPrincipal:
    operator_id: int
    operator: str
    role: str
    token_prefix: str


@dataclass(frozen=True)
class CreatedToken:
    raw: str
    """Shown once; never stored."""
    prefix: str
    token_id: int
    operator_id: int


def _operator(session: Session, username: str) -> Operator:
    operator = session.scalar(select(Operator).where(Operator.username == username))
    if operator is None:
        raise NotFoundError(f"no operator named {username!r}")
    return operator


def create_token(session: Session, hasher: KeyedHasher, username: str, label: str, *, actor: Actor) -> CreatedToken:
    operator = _operator(session, username)
    prefix = TOKEN_PREFIX + secrets.token_hex(4)
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    token = McpToken(
        operator_id=operator.id,
        label=label[:200],
        prefix=prefix,
        token_hash=hasher.hexdigest(TOKEN_PURPOSE, raw),
        created_at=utcnow(),
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor,
        action="mcp_token.create",
        target_type="mcp_token",
        target_id=token.id,
        target_label=prefix,
        details={"operator": operator.username},
    )
    return CreatedToken(raw=raw, prefix=prefix, token_id=token.id, operator_id=operator.id)


def revoke_token(session: Session, prefix: str, *, actor: Actor) -> None:
    token = session.scalar(select(McpToken).where(McpToken.prefix == prefix))
    if token is None:
        raise NotFoundError(f"no MCP token with prefix {prefix!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            session,
            actor,
            action="mcp_token.revoke",
            target_type="mcp_token",
            target_id=token.id,
            target_label=prefix,
        )


def list_tokens(session: Session, username: str | None = None) -> list[tuple[McpToken, str]]:
    query = select(McpToken, Operator.username).join(Operator, Operator.id == McpToken.operator_id)
    if username is not None:
        query = query.where(Operator.username == username)
    return [(t, u) for t, u in session.execute(query.order_by(McpToken.id))]


def set_operator_gate(session: Session, username: str, enabled: bool, *, actor: Actor) -> None:
    operator = _operator(session, username)
    gate = session.get(McpOperatorGate, operator.id)
    if gate is None:
        gate = McpOperatorGate(operator_id=operator.id, enabled=enabled)
        session.add(gate)
    gate.enabled, gate.updated_at = enabled, utcnow()
    audit.record(
        session,
        actor,
        action="mcp.operator_gate",
        target_type="operator",
        target_id=operator.id,
        target_label=operator.username,
        details={"enabled": enabled},
    )


def operator_gate(session: Session, operator_id: int) -> bool:
    gate = session.get(McpOperatorGate, operator_id)
    return bool(gate and gate.enabled)


def token_prefix(raw: str) -> str:
    """`mcp_<8 hex>` of `mcp_<8 hex>_<secret>`; the secret is url-safe base64 and may itself contain `_`."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != TOKEN_PREFIX or len(parts[1]) != 8:
        return ""
    return f"{TOKEN_PREFIX}{parts[1]}"


def authenticate(
    session: Session, hasher: KeyedHasher, raw: str | None, now: dt.datetime | None = None
) -> McpPrincipal | Denied:
    """Checks a bearer token and both gates; touches last_used_at (coarsely). The caller commits."""
    if not raw:
        return Denied.MISSING
    prefix = token_prefix(raw)
    token = session.scalar(select(McpToken).where(McpToken.prefix == prefix)) if prefix else None
    # Hash even when the prefix is unknown so both failures take about the same time.
    digest_ok = hasher.matches(TOKEN_PURPOSE, raw, token.token_hash if token else "0" * 64)
    if token is None or not digest_ok:
        return Denied.INVALID
    if token.revoked_at is not None:
        return Denied.REVOKED
    operator = session.get(Operator, token.operator_id)
    if operator is None or operator.disabled:
        return Denied.OPERATOR_DISABLED
    if not get_setting(session, "mcp_enabled"):
        return Denied.INSTANCE_GATE_OFF
    if not operator_gate(session, operator.id):
        return Denied.OPERATOR_GATE_OFF
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_GRANULARITY:
        token.last_used_at = now
    return McpPrincipal(operator.id, operator.username, operator.role, token.prefix)
