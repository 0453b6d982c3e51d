"""The data model. Import models from here; `Base.metadata` holds every table."""

from pooler.models.accounts import AccountSecret, QuotaWindow, UpstreamAccount
from pooler.models.alerts import AlertDelivery, AlertIncident
from pooler.models.base import Base, utcnow
from pooler.models.files import FilePin
from pooler.models.keys import PoolKey
from pooler.models.logs import AuditEvent, RequestAttempt, RequestLog
from pooler.models.mcp import McpOperatorGate, McpToken
from pooler.models.onboarding import OAuthFlow, OAuthInvite
from pooler.models.operators import AdminSession, Operator, OperatorPool
from pooler.models.pools import Pool, PoolAssignment, PoolSettings
from pooler.models.sessions import KeyRateHit, StickySession
from pooler.models.system import DataVersion, JobRequest, JobRun, Setting

__all__ = [
    "AccountSecret",
    "AdminSession",
    "AlertDelivery",
    "AlertIncident",
    "AuditEvent",
    "Base",
    "DataVersion",
    "FilePin",
    "JobRequest",
    "JobRun",
    "KeyRateHit",
    "McpOperatorGate",
    "McpToken",
    "OAuthFlow",
    "OAuthInvite",
    "Operator",
    "OperatorPool",
    "Pool",
    "PoolAssignment",
    "PoolKey",
    "PoolSettings",
    "QuotaWindow",
    "RequestAttempt",
    "RequestLog",
    "Setting",
    "StickySession",
    "UpstreamAccount",
    "utcnow",
]
