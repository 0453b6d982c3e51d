"""The safe onboarding error codes and what an operator should do about each (docs/ONBOARDING.md)."""

from __future__ import annotations

from pooler.errors import PoolerError
from pooler.oauth.errors import UNREACHABLE_CODES, RefreshFailure

ERROR_MESSAGES: dict[str, str] = {
    "invalid_callback_url": "That is not a callback URL. Copy the whole address from the browser's address bar "
    "(it starts with http://localhost:1455/auth/callback).",
    "invalid_callback_origin": "The URL does not point at http://localhost:1455/auth/callback. Paste only the "
    "address the OpenAI sign-in redirected to.",
    "missing_state": "The callback URL has no state. Start a new link from this page.",
    "duplicate_callback_param": "The callback URL repeats a parameter. Start again and paste the URL unedited.",
    "missing_callback_result": "The callback URL carries neither a code nor an error. Start a new link.",
    "provider_denied": "OpenAI reported that authorization was denied. Start again only if the account should be "
    "connected.",
    "invalid_state": "The callback belongs to another (older or unrelated) sign-in. Paste the URL from the sign-in "
    "you opened from this dialog.",
    "expired_flow": "This sign-in expired. Start a new one.",
    "flow_not_pending": "This sign-in is already finished. Start a new link or relink and use its latest URL.",
    "stale_flow": "A newer sign-in replaced this one. Use the newest dialog.",
    "token_exchange_failed": "OpenAI did not accept the authorization. Retry once; if it keeps failing, check the "
    "auth server's availability.",
    "auth_server_unreachable": "Could not reach auth.openai.com (connection refused, DNS failure or timeout), so "
    "nothing was changed. Check the gateway's outbound network or proxy, then retry.",
    "identity_mismatch": "The account you signed in with is not the account being relinked. Sign in with the same "
    "ChatGPT account and workspace shown on this page.",
    "identity_conflict": "This ChatGPT account is already an upstream here. Relink it from its own page instead "
    "of linking it again.",
    "unauthorized_pool": "You may not manage the selected pool.",
}


class OnboardingError(PoolerError):
    """A refused onboarding step. `code` is one of ERROR_MESSAGES; `detail` is an optional safe upstream code."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        if code not in ERROR_MESSAGES:
            raise ValueError(f"unknown onboarding error code {code!r}")
        self.code = code
        self.detail = detail
        super().__init__(ERROR_MESSAGES[code])


def token_call_error(failure: RefreshFailure) -> str:
    """Which side failed a token call: never reached (`auth_server_unreachable`) or reached and refused
    (`token_exchange_failed`), so the operator knows whether to look at the network or at the account."""
    return "auth_server_unreachable" if failure.code in UNREACHABLE_CODES else "token_exchange_failed"
