"""OAuth like auth.openai.com: refresh with rotation and reuse detection, the browser PKCE flow with a scripted
consent (authorize redirects at once), and the device-code flow."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from pooler.simulator.bodies import read_body
from pooler.simulator.state import DeviceAuth, PendingCode, SimState
from pooler.simulator.tokens import Identity, TokenError, issue_bundle, verify_refresh_token

DEVICE_REDIRECT_URI = "https://auth.openai.com/deviceauth/callback"


def oauth_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _tokens(state: SimState, ident: Identity) -> dict[str, Any]:
    account = state.account(ident)
    bundle = issue_bundle(account.identity(), state.config.secret, state.now(), state.config.access_ttl)
    return {**bundle.as_dict(), "token_type": "Bearer", "expires_in": int(state.config.access_ttl)}


async def token(request: web.Request) -> web.Response:
    state: SimState = request.app["state"]
    body = await read_body(request)
    grant = body.get("grant_type")
    if grant == "refresh_token":
        return _refresh(state, str(body.get("refresh_token") or ""), request)
    if grant == "authorization_code":
        return _exchange(state, body)
    return oauth_error(400, "unsupported_grant_type", "grant_type must be refresh_token or authorization_code")


def _refresh(state: SimState, refresh_token: str, request: web.Request) -> web.Response:
    try:
        ident = verify_refresh_token(refresh_token, state.config.secret)
    except TokenError:
        return oauth_error(401, "invalid_grant", "Invalid refresh token")
    entry = request.get("sim_entry")
    if entry is not None:
        entry.account = ident.account_id  # whose refresh this is (the journal, the challenge cookie)
    if refresh_token in state.spent_refresh_tokens:
        return oauth_error(401, "refresh_token_reused", "Your refresh token has already been used.")
    account = state.account(ident)
    if account.revoked:
        return oauth_error(401, "refresh_token_invalidated", "Your refresh token has been invalidated.")
    state.spent_refresh_tokens.add(refresh_token)  # rotation: this one never works again
    return web.json_response(_tokens(state, ident))


def _exchange(state: SimState, body: dict[str, Any]) -> web.Response:
    pending = state.codes.get(str(body.get("code") or ""))
    if pending is None or pending.used:
        return oauth_error(400, "invalid_grant", "Unknown or used authorization code")
    if str(body.get("redirect_uri") or "") != pending.redirect_uri:
        return oauth_error(400, "invalid_grant", "redirect_uri does not match the authorization request")
    verifier = str(body.get("code_verifier") or "")
    if not hmac.compare_digest(s256(verifier), pending.code_challenge):
        return oauth_error(400, "invalid_grant", "PKCE verification failed")
    pending.used = True
    account = state.accounts.get(pending.account_id)
    ident = account.identity() if account else Identity(pending.account_id, state.config.default_plan)
    return web.json_response(_tokens(state, ident))


async def authorize(request: web.Request) -> web.Response:
    """Scripted consent: signs in as `login_hint`/`account` (or the default login account) and redirects."""
    state: SimState = request.app["state"]
    q = request.query
    redirect_uri = q.get("redirect_uri", "")
    if q.get("response_type") != "code" or not redirect_uri:
        return oauth_error(400, "invalid_request", "response_type=code and redirect_uri are required")
    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        return oauth_error(400, "invalid_request", "PKCE with code_challenge_method=S256 is required")
    account_id = q.get("account") or q.get("login_hint") or state.config.default_login_account
    code = "ac_" + secrets.token_urlsafe(24)
    state.codes[code] = PendingCode(account_id, redirect_uri, q["code_challenge"])
    params = {"code": code, "scope": q.get("scope", ""), "state": q.get("state", "")}
    parts = urlsplit(redirect_uri)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    raise web.HTTPFound(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")))


async def device_usercode(request: web.Request) -> web.Response:
    state: SimState = request.app["state"]
    await read_body(request)
    device_auth_id = "deviceauth_" + secrets.token_hex(12)
    user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
    state.devices[device_auth_id] = DeviceAuth(device_auth_id, user_code)
    # The real service sends `interval` as a string of seconds.
    return web.json_response({"device_auth_id": device_auth_id, "user_code": user_code, "interval": "1"})


def approve(state: SimState, user_code: str, account_id: str | None) -> DeviceAuth | None:
    device = next((d for d in state.devices.values() if d.user_code == user_code), None)
    if device is None or device.code is not None:
        return device
    device.account_id = account_id or state.config.default_login_account
    device.code_verifier = secrets.token_urlsafe(32)
    device.code_challenge = s256(device.code_verifier)
    device.code = "ac_" + secrets.token_urlsafe(24)
    state.codes[device.code] = PendingCode(device.account_id, DEVICE_REDIRECT_URI, device.code_challenge)
    return device


async def device_token(request: web.Request) -> web.Response:
    state: SimState = request.app["state"]
    body = await read_body(request)
    device = state.devices.get(str(body.get("device_auth_id") or ""))
    if device is None or device.user_code != body.get("user_code"):
        return oauth_error(404, "deviceauth_not_found", "Unknown device authorization")
    device.polls += 1
    auto = state.config.device_auto_approve_polls
    if device.code is None and auto > 0 and device.polls >= auto:
        approve(state, device.user_code, None)
    if device.code is None:
        return oauth_error(403, "deviceauth_authorization_pending", "Authorization pending")
    return web.json_response(
        {
            "authorization_code": device.code,
            "code_challenge": device.code_challenge,
            "code_verifier": device.code_verifier,
        }
    )


async def device_page(request: web.Request) -> web.Response:
    """The page a person opens; a GET with `user_code` (and optional `account`) approves, like clicking Allow."""
    state: SimState = request.app["state"]
    params = dict(request.query)
    if request.method == "POST":
        params.update(await read_body(request))
    user_code = params.get("user_code")
    if not user_code:
        form = (
            "<form method=post><label>Code <input name=user_code></label>"
            "<label>Account <input name=account></label><button>Allow</button></form>"
        )
        return web.Response(
            text=f"<html><body><h1>Codex simulator sign-in</h1>{form}</body></html>", content_type="text/html"
        )
    device = approve(state, user_code, params.get("account"))
    if device is None:
        return web.Response(status=404, text="<html><body>Unknown code</body></html>", content_type="text/html")
    msg = f"Signed in as {escape(device.account_id or '')}. You can close this page."
    return web.Response(text=f"<html><body><p>{msg}</p></body></html>", content_type="text/html")
