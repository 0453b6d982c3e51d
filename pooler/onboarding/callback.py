"""Strict validation of the localhost callback URL an operator pastes back (pure, no I/O).

The checks run in a fixed order so each mistake maps to exactly one code: not a URL at all, wrong place,
repeated parameters, no state, someone else's state, a provider error, and finally no code. The pasted text is
never echoed in any error.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from pooler.onboarding.errors import OnboardingError

MAX_CALLBACK_CHARS = 4096
EXPECTED_SCHEME, EXPECTED_HOST, EXPECTED_PORT, EXPECTED_PATH = "http", "localhost", 1455, "/auth/callback"
# Parameters whose repetition could smuggle a second value past a check on the first.
SINGLE_PARAMS = ("code", "state", "error", "error_description", "scope")


@dataclass(frozen=True)
class CallbackResult:
    code: str = field(repr=False)


def validate_callback_url(pasted: str, expected_state: str) -> CallbackResult:
    """The authorization code of a valid callback; raises OnboardingError with the first failing check's code."""
    text = (pasted or "").strip()
    if not text or len(text) > MAX_CALLBACK_CHARS or any(ord(ch) < 33 or ord(ch) == 127 for ch in text):
        raise OnboardingError("invalid_callback_url")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise OnboardingError("invalid_callback_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.fragment:
        raise OnboardingError("invalid_callback_url")
    if (
        parts.scheme.lower() != EXPECTED_SCHEME
        or parts.hostname.lower() != EXPECTED_HOST
        or port != EXPECTED_PORT
        or parts.username is not None
        or parts.password is not None
        or parts.path != EXPECTED_PATH
    ):
        raise OnboardingError("invalid_callback_origin")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise OnboardingError("invalid_callback_url") from None
    names = [name for name, _ in pairs]
    if any(names.count(name) > 1 for name in SINGLE_PARAMS):
        raise OnboardingError("duplicate_callback_param")
    params = dict(pairs)
    state = params.get("state", "")
    if not state:
        raise OnboardingError("missing_state")
    if not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise OnboardingError("invalid_state")
    if params.get("error"):
        raise OnboardingError("provider_denied")
    code = params.get("code", "")
    if not code:
        raise OnboardingError("missing_callback_result")
    return CallbackResult(code)
