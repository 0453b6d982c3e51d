"""Every lifecycle vocabulary of the product, in one place (DB values, code, UI and docs use these names)."""

from __future__ import annotations

from enum import StrEnum


class PoolStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class AccountState(StrEnum):
    """Lifecycle of an upstream account. `quota_exhausted` is derived from quota evidence by the scheduler."""

    ACTIVE = "active"
    PAUSED = "paused"
    REFRESH_DUE = "refresh_due"
    REFRESHING = "refreshing"
    REFRESH_FAILED = "refresh_failed"
    REAUTH_REQUIRED = "reauth_required"
    QUOTA_EXHAUSTED = "quota_exhausted"
    DEACTIVATED = "deactivated"
    """The upstream said the account (or its workspace) is dead: 402, or 403 account_deactivated,
    deactivated_workspace, token_invalidated, app_session_terminated. Set by the gateway; out of rotation until
    an operator reactivates or relinks it."""
    DELETED = "deleted"


class AssignmentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    REVOKED = "revoked"


class SecretKind(StrEnum):
    ACCESS_TOKEN = "access_token"
    REFRESH_TOKEN = "refresh_token"
    ID_TOKEN = "id_token"


FIVE_HOUR_MINUTES = 300
WEEKLY_MINUTES = 10080
"""The two codex quota windows, by length in minutes (how the upstream reports them; some plans report only the
weekly one, in the primary slot, so windows are classified by length, never by slot)."""


class Strategy(StrEnum):
    LEAST_USED = "least-used"
    ROUND_ROBIN = "round-robin"
    PRIMARY_FIRST = "primary-first"
    RANDOM = "random"


class OperatorRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    VIEWER = "viewer"


class ActorType(StrEnum):
    OPERATOR = "operator"
    CLI = "cli"
    SCHEDULER = "scheduler"
    GATEWAY = "gateway"
    SYSTEM = "system"


class QuotaSource(StrEnum):
    HEADERS = "headers"
    USAGE_API = "usage_api"
    LIMIT_ERROR = "limit_error"


class FlowStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


class InviteStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"
