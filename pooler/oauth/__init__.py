"""OAuth against the ChatGPT auth server: token refresh (and, later, onboarding flows), with failure classes.

The core owns this so both the scheduler and the admin's OAuth onboarding use one implementation.
"""

from pooler.oauth.errors import FailureKind, RefreshFailure, classify_failure
from pooler.oauth.jwt import token_expiry, unverified_claims
from pooler.oauth.refresh import DEFAULT_AUTH_BASE_URL, DEFAULT_CLIENT_ID, TokenSet, refresh_tokens

__all__ = [
    "DEFAULT_AUTH_BASE_URL",
    "DEFAULT_CLIENT_ID",
    "FailureKind",
    "RefreshFailure",
    "TokenSet",
    "classify_failure",
    "refresh_tokens",
    "token_expiry",
    "unverified_claims",
]
