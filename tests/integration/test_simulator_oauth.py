"""OAuth against the simulator: refresh rotation and reuse detection, browser PKCE and device-code flows."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.processes import VENV_BIN, wait_until
from tests.support.simulator import RunningSimulator, bearer, turn_body

pytestmark = pytest.mark.integration
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
BROWSER_REDIRECT = "http://localhost:1455/auth/callback"
DEVICE_REDIRECT = "https://auth.openai.com/deviceauth/callback"


def refresh(sim: RunningSimulator, refresh_token: str) -> httpx.Response:
    body = {
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "scope": "openid profile email",
    }
    return httpx.post(f"{sim.base_url}/oauth/token", json=body, timeout=10)


def exchange(sim: RunningSimulator, code: str, verifier: str, redirect_uri: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }
    return httpx.post(f"{sim.base_url}/oauth/token", data=form, timeout=10)


def account_served(sim: RunningSimulator, tokens: dict[str, Any]) -> str:
    """Proves an access token works on the backend and returns the account the usage API reports for it."""
    resp = httpx.get(f"{sim.base_url}/backend-api/wham/usage", headers=bearer(tokens["access_token"]), timeout=10)
    assert resp.status_code == 200
    return str(resp.json()["account_id"])


def test_refresh_rotates_and_detects_reuse(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    first = sim.client.make_auth("acct-1")["tokens"]
    rotated = refresh(sim, first["refresh_token"])
    assert rotated.status_code == 200
    new = rotated.json()
    assert set(new) >= {"id_token", "access_token", "refresh_token"}
    assert new["refresh_token"].startswith("rt_") and new["refresh_token"] != first["refresh_token"]
    assert account_served(sim, new) == "acct-1"
    reused = refresh(sim, first["refresh_token"])
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "refresh_token_reused"
    assert refresh(sim, new["refresh_token"]).status_code == 200
    assert refresh(sim, new["refresh_token"]).json()["error"]["code"] == "refresh_token_reused"
    garbage = refresh(sim, "rt_not-a-real-token")
    assert garbage.status_code == 401 and garbage.json()["error"]["code"] == "invalid_grant"


def test_offline_auth_json_refreshes_once_and_revocation_is_permanent(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    out = subprocess.run(
        [str(VENV_BIN / "pooler"), "simulator", "make-auth", "--account", "acct-2", "--plan", "team"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    tokens = json.loads(out.stdout)["tokens"]
    assert refresh(sim, tokens["refresh_token"]).status_code == 200
    assert refresh(sim, tokens["refresh_token"]).json()["error"]["code"] == "refresh_token_reused"
    other = sim.client.make_auth("acct-2")["tokens"]
    sim.client.upsert_account("acct-2", revoked=True)
    revoked = refresh(sim, other["refresh_token"])
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "refresh_token_invalidated"
    resp = httpx.post(f"{sim.codex_base_url}/responses", json=turn_body(), headers=bearer(other["access_token"]))
    assert resp.status_code == 401


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_browser_flow_with_pkce(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": BROWSER_REDIRECT,
        "scope": "openid profile email offline_access",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": "st-123",
        "originator": "codex_cli_rs",
        "login_hint": "acct-3",
    }
    resp = httpx.get(f"{sim.base_url}/oauth/authorize", params=params, follow_redirects=False, timeout=10)
    assert resp.status_code == 302
    location = urlsplit(resp.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == BROWSER_REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"]
    code = query["code"][0]
    wrong = exchange(sim, code, pkce()[0], BROWSER_REDIRECT)
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_grant"
    ok = exchange(sim, code, verifier, BROWSER_REDIRECT)
    assert ok.status_code == 200
    assert account_served(sim, ok.json()) == "acct-3"
    assert exchange(sim, code, verifier, BROWSER_REDIRECT).status_code == 400  # codes are single use
    no_pkce = {k: v for k, v in params.items() if not k.startswith("code_challenge")}
    assert httpx.get(f"{sim.base_url}/oauth/authorize", params=no_pkce, timeout=10).status_code == 400


def start_device(sim: RunningSimulator) -> dict[str, Any]:
    resp = httpx.post(f"{sim.base_url}/api/accounts/deviceauth/usercode", json={"client_id": CLIENT_ID}, timeout=10)
    assert resp.status_code == 200
    body = dict(resp.json())
    assert body["device_auth_id"] and body["user_code"] and int(body["interval"]) >= 1
    return body


def poll(sim: RunningSimulator, device: dict[str, Any]) -> httpx.Response:
    body = {"device_auth_id": device["device_auth_id"], "user_code": device["user_code"]}
    return httpx.post(f"{sim.base_url}/api/accounts/deviceauth/token", json=body, timeout=10)


def test_device_flow_approved_on_the_page(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    sim.client.configure(device_auto_approve_polls=0)
    device = start_device(sim)
    assert poll(sim, device).status_code == 403
    assert poll(sim, device).status_code == 403  # still pending: nobody approved yet
    assert httpx.get(f"{sim.base_url}/codex/device", timeout=10).status_code == 200
    page = httpx.get(f"{sim.base_url}/codex/device", params={"user_code": device["user_code"], "account": "acct-2"})
    assert page.status_code == 200 and "acct-2" in page.text
    granted = poll(sim, device)
    assert granted.status_code == 200
    grant = granted.json()
    tokens = exchange(sim, grant["authorization_code"], grant["code_verifier"], DEVICE_REDIRECT)
    assert tokens.status_code == 200
    assert account_served(sim, tokens.json()) == "acct-2"


def test_device_flow_auto_approves_after_polls(shared_simulator: RunningSimulator) -> None:
    sim = shared_simulator
    device = start_device(sim)
    granted = wait_until(lambda: (r := poll(sim, device)).status_code == 200 and r.json(), timeout=10)
    assert isinstance(granted, dict)
    tokens = exchange(sim, granted["authorization_code"], granted["code_verifier"], DEVICE_REDIRECT).json()
    assert account_served(sim, tokens) == "acct-1"
    unknown = poll(sim, {"device_auth_id": "deviceauth_nope", "user_code": "X"})
    assert unknown.status_code == 404
