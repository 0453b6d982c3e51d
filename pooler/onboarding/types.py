"""Vocabulary and small value types of the onboarding flows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from pooler.services import operators as ops


class Purpose(StrEnum):
    LINK = "link"
    RELINK = "relink"
    INVITE = "invite"


class Method(StrEnum):
    BROWSER = "browser"
    DEVICE = "device"


@dataclass(frozen=True)
class OperatorScope:
    """The operator acting, as far as onboarding needs to know: who, and which pools they may manage."""

    id: int
    username: str
    role: str
    pool_ids: frozenset[int] = frozenset()

    def can_manage(self, pool_id: int) -> bool:
        return ops.can_write(self.role) and ops.pool_visible(self.role, self.pool_ids, pool_id)


@dataclass(frozen=True)
class Requester:
    """Who is asking to continue a flow: the operator (None for an invitee), the browser-session nonce that was
    bound to the flow at start, and for invitees the invite their token resolved to."""

    operator: OperatorScope | None
    binding: str = field(repr=False)
    invite_id: int | None = None


@dataclass(frozen=True)
class OAuthConfig:
    auth_base_url: str
    client_id: str


@dataclass(frozen=True)
class BrowserStart:
    flow_id: int
    authorize_url: str = field(repr=False)
    expires_at: dt.datetime


@dataclass(frozen=True)
class DevicePending:
    flow_id: int
    user_code: str
    verification_url: str
    interval: int
    next_poll_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class LinkOutcome:
    flow_id: int
    purpose: str
    account_id: int
    label: str
    pool_name: str
    created: bool
    state: str
