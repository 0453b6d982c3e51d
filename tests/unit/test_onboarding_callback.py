"""Pure onboarding pieces: PKCE, the authorization URL, and the pasted-callback validator (one test per code)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from pooler.onboarding.callback import validate_callback_url
from pooler.onboarding.errors import ERROR_MESSAGES, OnboardingError
from pooler.onboarding.pkce import authorization_url, new_pkce, new_state, s256_challenge
from pooler.simulator.oauth import s256 as sim_s256

STATE = "st_" + "a" * 40
BASE = "http://localhost:1455/auth/callback"


def _code(url: str, state: str = STATE) -> str:
    with pytest.raises(OnboardingError) as info:
        validate_callback_url(url, state)
    assert info.value.code in ERROR_MESSAGES
    assert url not in str(info.value) or not url  # the pasted text is never echoed
    return info.value.code


def test_valid_callback_returns_code() -> None:
    result = validate_callback_url(f"  {BASE}?code=ac_123&scope=openid&state={STATE}\n", STATE)
    assert result.code == "ac_123"
    assert "ac_123" not in repr(result)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "not a url",
        "localhost:1455/auth/callback?code=x",
        f"{BASE}?code=a b&state={STATE}",
        f"ftp://localhost:1455/auth/callback?code=x&state={STATE}",
        "http://localhost:99999/auth/callback",
        f"{BASE}?code=x&state={STATE}#frag",
        "http://" + "x" * 5000,
        f"{BASE}?code=x&state={STATE}\x00",
    ],
)
def test_invalid_callback_url(url: str) -> None:
    assert _code(url) == "invalid_callback_url"


@pytest.mark.parametrize(
    "url",
    [
        f"https://localhost:1455/auth/callback?code=x&state={STATE}",
        f"http://127.0.0.1:1455/auth/callback?code=x&state={STATE}",
        f"http://localhost:1456/auth/callback?code=x&state={STATE}",
        f"http://localhost/auth/callback?code=x&state={STATE}",
        f"http://localhost:1455/auth/callbackx?code=x&state={STATE}",
        f"http://evil.example/auth/callback?code=x&state={STATE}",
        f"http://user:pw@localhost:1455/auth/callback?code=x&state={STATE}",
    ],
)
def test_invalid_callback_origin(url: str) -> None:
    assert _code(url) == "invalid_callback_origin"


@pytest.mark.parametrize(
    "query", [f"code=a&code=b&state={STATE}", f"code=a&state={STATE}&state={STATE}", f"error=x&error=y&state={STATE}"]
)
def test_duplicate_callback_param(query: str) -> None:
    assert _code(f"{BASE}?{query}") == "duplicate_callback_param"


@pytest.mark.parametrize("query", ["code=abc", "code=abc&state=", ""])
def test_missing_state(query: str) -> None:
    assert _code(f"{BASE}?{query}" if query else BASE) == "missing_state"


def test_invalid_state() -> None:
    assert _code(f"{BASE}?code=abc&state=other") == "invalid_state"
    # Checked before the provider's answer: an unrelated error callback is still someone else's.
    assert _code(f"{BASE}?error=access_denied&state=other") == "invalid_state"


def test_provider_denied() -> None:
    assert _code(f"{BASE}?error=access_denied&error_description=no&state={STATE}") == "provider_denied"
    assert _code(f"{BASE}?code=abc&error=access_denied&state={STATE}") == "provider_denied"


def test_missing_callback_result() -> None:
    assert _code(f"{BASE}?state={STATE}") == "missing_callback_result"
    assert _code(f"{BASE}?code=&state={STATE}") == "missing_callback_result"


def test_pkce_s256_and_state() -> None:
    pair = new_pkce()
    assert 43 <= len(pair.verifier) <= 128
    assert pair.challenge == s256_challenge(pair.verifier)
    # Agrees with the simulator's independent S256 (what the auth server checks).
    assert sim_s256(pair.verifier) == pair.challenge
    assert pair.verifier not in repr(pair)
    assert new_state() != new_state()


def test_authorization_url_has_the_codex_parameters() -> None:
    url = authorization_url("https://auth.example/", "app_X", "chal", "st")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "auth.example", "/oauth/authorize")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q == {
        "response_type": "code",
        "client_id": "app_X",
        "redirect_uri": "http://localhost:1455/auth/callback",
        "scope": "openid profile email offline_access",
        "code_challenge": "chal",
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": "st",
        "originator": "codex_cli_rs",
    }


def test_unknown_error_code_is_a_bug() -> None:
    with pytest.raises(ValueError):
        OnboardingError("nope")
