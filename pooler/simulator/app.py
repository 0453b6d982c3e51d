"""The aiohttp application: routes, and one middleware that journals, authenticates and applies the scripted
"before the first byte" faults (delay, status) for every upstream route."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from pooler.simulator import codex, control, media, oauth
from pooler.simulator.accounts import Account
from pooler.simulator.auth import authenticate, bearer
from pooler.simulator.bodies import MAX_BODY, error_body
from pooler.simulator.codex import TURN_STATE_HEADER
from pooler.simulator.faults import Fault
from pooler.simulator.journal import CHALLENGE_COOKIE, SELECTED_HEADERS, Entry, received_headers
from pooler.simulator.state import SimConfig, SimState
from pooler.simulator.tokens import fingerprint
from pooler.simulator.usage import limit_error, quota_headers, wham_usage

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUTHED_ROUTES = {"responses", "compact", "models", "usage"}
CHALLENGE_ROUTES = {"usage", "oauth_token", "compact", "models"}
"""Answers that set a Cloudflare-like cookie (per account), as chatgpt.com's edge does for its clients (the
streamed routes are left out: their headers are sent before the middleware sees the answer)."""
STATE_KEY = "state"


def classify(path: str) -> str:
    if path.startswith("/backend-api/codex/responses/compact"):
        return "compact"
    if path.startswith("/backend-api/codex/responses"):
        return "responses"
    if path.startswith("/backend-api/codex/models"):
        return "models"
    if path in ("/backend-api/wham/usage", "/api/codex/usage"):
        return "usage"
    if path == "/oauth/token":
        return "oauth_token"
    if path == "/oauth/authorize":
        return "authorize"
    if path.startswith(("/api/accounts/deviceauth", "/codex/device")):
        return "device"
    return "other"


def fault_response(fault: Fault, account: Account | None, state: SimState) -> web.Response:
    now = state.now()
    headers = quota_headers(account, now) if account else {}
    body = fault.body
    if body is None:
        if fault.status == 429 and account is not None:
            body = limit_error(account, now, account.primary.view(now).reset_at)
        elif fault.status == 429:
            resets_at = math.ceil(now + 3600)
            body = {
                "error": {
                    "type": "usage_limit_reached",
                    "message": "The usage limit has been reached",
                    "plan_type": "plus",
                    "resets_at": resets_at,
                    "resets_in_seconds": 3600,
                }
            }
        elif fault.status == 401:
            body = error_body("Provided authentication token is expired. Please try signing in again.", "token_expired")
        elif fault.status == 503:
            body = error_body("The server is overloaded (simulated).", "server_is_overloaded", "server_error")
        else:
            body = error_body(f"Simulated upstream error {fault.status}.", f"simulated_{fault.status}", "server_error")
    return web.json_response(body, status=fault.status, headers={**headers, **fault.headers})


def _turn_state_issuer(state: SimState, echoed: str | None) -> str | None:
    """Who issued the echoed turn-state, for the journal (whatever the answer: a 429 or a fault too)."""
    return state.turn_states.get(echoed, "unknown") if echoed else None


@web.middleware
async def upstream_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_sim"):
        return await handler(request)
    state: SimState = request.app[STATE_KEY]
    route = classify(request.path)
    transport = "websocket" if request.headers.get("Upgrade", "").lower() == "websocket" else "http"
    token = bearer(request)
    entry: Entry = state.journal.record(
        time=state.now(),
        method=request.method,
        path=request.path,
        route=route,
        transport=transport,
        authorization=request.headers.get("Authorization"),
        bearer_fingerprint=fingerprint(token) if token else None,
        headers={h: request.headers[h] for h in SELECTED_HEADERS if h in request.headers},
        turn_state_issuer=_turn_state_issuer(state, request.headers.get(TURN_STATE_HEADER)),
        received=received_headers(request.headers),
    )
    sent = request.cookies.get(CHALLENGE_COOKIE)
    entry.challenge_cookie_sent = sent is not None
    entry.challenge_cookie_of = state.challenge_cookies.get(sent) if sent else None
    request["sim_entry"] = entry
    account: Account | None = None
    try:
        if route in AUTHED_ROUTES:
            checked = authenticate(request, state)
            if isinstance(checked, web.Response):
                entry.account = request.headers.get("ChatGPT-Account-Id")
                entry.status = checked.status
                return checked
            account = checked
            request["sim_account"] = account
            entry.account = account.account_id
        account_id = account.account_id if account else None
        delay = state.faults.take({"delay"}, route, account_id, transport)
        if delay is not None:
            entry.fault = "delay"
            await asyncio.sleep(delay.seconds)
        status = state.faults.take({"status"}, route, account_id, transport)
        if status is not None:
            entry.fault = f"status:{status.status}"
            entry.status = status.status
            return fault_response(status, account, state)
        response = await handler(request)
        if entry.status is None:
            entry.status = response.status
        if route in CHALLENGE_ROUTES and entry.account is not None and response.status < 400:
            _set_challenge_cookie(state, response, entry.account)
        return response
    except web.HTTPException as exc:
        entry.status = exc.status
        raise


def _set_challenge_cookie(state: SimState, response: web.StreamResponse, account_id: str) -> None:
    """A fresh cookie per answer, remembered as this account's: a later request that sends it back shows which
    account's answer its client kept it from."""
    value = secrets.token_urlsafe(16)
    state.challenge_cookies[value] = account_id
    response.set_cookie(CHALLENGE_COOKIE, value, path="/", httponly=True)


def build_app(config: SimConfig) -> web.Application:
    app = web.Application(middlewares=[upstream_middleware], client_max_size=MAX_BODY)
    app[STATE_KEY] = SimState(config)
    app.router.add_post("/backend-api/codex/responses", codex.responses_post)
    app.router.add_get("/backend-api/codex/responses", codex.responses_ws)
    app.router.add_post("/backend-api/codex/responses/compact", codex.compact)
    app.router.add_get("/backend-api/codex/models", codex.models)
    app.router.add_get("/backend-api/wham/usage", wham_usage)
    app.router.add_get("/api/codex/usage", wham_usage)
    app.router.add_post("/oauth/token", oauth.token)
    app.router.add_get("/oauth/authorize", oauth.authorize)
    app.router.add_post("/api/accounts/deviceauth/usercode", oauth.device_usercode)
    app.router.add_post("/api/accounts/deviceauth/token", oauth.device_token)
    app.router.add_route("*", "/codex/device", oauth.device_page)
    app.router.add_routes(control.routes)
    media.register(app)  # files, transcription, images
    return app
