"""The control API under `/_sim` (no auth: the simulator binds 127.0.0.1 and is for tests and the demo).

GET  /_sim/health                       -> {"ok": true}
POST /_sim/reset                        back to start-up state
GET|POST|DELETE /_sim/faults            list / add (one object or {"faults": [...]}) / clear; DELETE /_sim/faults/{id}
GET|DELETE /_sim/journal?since=SEQ      request journal entries (newest last) / clear
GET|POST /_sim/clock                    {"advance": s} | {"offset": s} | {"now": unix} -> {"now", "offset"}
GET|POST /_sim/accounts                 list / create-or-configure ({"account_id", "plan", "primary_budget", ...})
GET /_sim/accounts/{id}
GET|DELETE /_sim/streams            concurrent requests per account: open now and the maxima / forget maxima
POST /_sim/tokens                       {"account_id", "plan"?, "email"?, "expired"?} -> an auth.json object
GET|POST /_sim/config                   text, token_rate, reasoning_tokens, device_auto_approve_polls, ...
POST|DELETE /_sim/script                queue answers: {"responses": [{"text"} | {"function_call": {...}}]}
POST /_sim/device/approve               {"user_code", "account_id"?}
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pooler.simulator.authjson import make_auth_json
from pooler.simulator.bodies import bad_request, read_body
from pooler.simulator.faults import FaultError
from pooler.simulator.oauth import approve
from pooler.simulator.state import SimState
from pooler.simulator.tokens import Identity

routes = web.RouteTableDef()


def _state(request: web.Request) -> SimState:
    state: SimState = request.app["state"]
    return state


@routes.get("/_sim/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "now": _state(request).now()})


@routes.post("/_sim/reset")
async def reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return web.json_response({"ok": True})


@routes.get("/_sim/faults")
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": _state(request).faults.list()})


@routes.post("/_sim/faults")
async def add_faults(request: web.Request) -> web.Response:
    body = await read_body(request)
    specs: list[dict[str, Any]] = body["faults"] if isinstance(body.get("faults"), list) else [body]
    try:
        added = [_state(request).faults.add(spec).as_dict() for spec in specs]
    except (FaultError, ValueError, TypeError) as exc:
        raise bad_request(str(exc), "invalid_fault") from exc
    return web.json_response({"faults": added})


@routes.delete("/_sim/faults")
async def clear_faults(request: web.Request) -> web.Response:
    return web.json_response({"removed": _state(request).faults.clear()})


@routes.delete("/_sim/faults/{fault_id}")
async def clear_fault(request: web.Request) -> web.Response:
    return web.json_response({"removed": _state(request).faults.clear(int(request.match_info["fault_id"]))})


@routes.get("/_sim/journal")
async def journal(request: web.Request) -> web.Response:
    since = int(request.query.get("since", "0"))
    return web.json_response({"entries": _state(request).journal.entries(since)})


@routes.delete("/_sim/journal")
async def clear_journal(request: web.Request) -> web.Response:
    _state(request).journal.clear()
    return web.json_response({"ok": True})


@routes.get("/_sim/clock")
async def get_clock(request: web.Request) -> web.Response:
    return web.json_response(_state(request).clock.snapshot())


@routes.post("/_sim/clock")
async def set_clock(request: web.Request) -> web.Response:
    clock = _state(request).clock
    body = await read_body(request)
    if "offset" in body:
        clock.offset = float(body["offset"])
    if "now" in body:
        clock.set_now(float(body["now"]))
    if "advance" in body:
        clock.advance(float(body["advance"]))
    return web.json_response(clock.snapshot())


@routes.get("/_sim/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response({"accounts": [a.describe(state.now()) for a in state.accounts.values()]})


@routes.get("/_sim/accounts/{account_id}")
async def get_account(request: web.Request) -> web.Response:
    state = _state(request)
    account = state.accounts.get(request.match_info["account_id"])
    if account is None:
        raise web.HTTPNotFound(text='{"error": "unknown account"}', content_type="application/json")
    return web.json_response(account.describe(state.now()))


@routes.post("/_sim/accounts")
async def upsert_account(request: web.Request) -> web.Response:
    state = _state(request)
    body = await read_body(request)
    if not body.get("account_id"):
        raise bad_request("account_id is required")
    ident = Identity(str(body["account_id"]), str(body.get("plan") or state.config.default_plan))
    account = state.account(ident)
    try:
        account.configure(body, state.now())
    except (ValueError, TypeError) as exc:
        raise bad_request(str(exc)) from exc
    return web.json_response(account.describe(state.now()))


@routes.post("/_sim/tokens")
async def tokens(request: web.Request) -> web.Response:
    state = _state(request)
    body = await read_body(request)
    if not body.get("account_id"):
        raise bad_request("account_id is required")
    account = state.account(Identity(str(body["account_id"]), str(body.get("plan") or state.config.default_plan)))
    account.configure({k: body[k] for k in ("plan", "email") if k in body}, state.now())
    doc = make_auth_json(
        account.identity(),
        state.config.secret,
        state.now(),
        expired=bool(body.get("expired")),
        access_ttl=float(body.get("access_ttl", state.config.access_ttl)),
    )
    return web.json_response(doc)


@routes.get("/_sim/config")
async def get_config(request: web.Request) -> web.Response:
    return web.json_response(_state(request).config.public())


@routes.post("/_sim/config")
async def set_config(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        state.config.update(await read_body(request))
    except (ValueError, TypeError) as exc:
        raise bad_request(str(exc), "invalid_config") from exc
    return web.json_response(state.config.public())


@routes.post("/_sim/script")
async def add_script(request: web.Request) -> web.Response:
    state = _state(request)
    body = await read_body(request)
    responses = body.get("responses")
    if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
        raise bad_request("responses must be a list of objects")
    state.scripts.extend(responses)
    return web.json_response({"queued": len(state.scripts)})


@routes.delete("/_sim/script")
async def clear_script(request: web.Request) -> web.Response:
    state = _state(request)
    state.scripts.clear()
    return web.json_response({"queued": 0})


@routes.post("/_sim/device/approve")
async def device_approve(request: web.Request) -> web.Response:
    body = await read_body(request)
    device = approve(_state(request), str(body.get("user_code") or ""), body.get("account_id"))
    if device is None:
        raise web.HTTPNotFound(text='{"error": "unknown user_code"}', content_type="application/json")
    return web.json_response({"approved": True, "account_id": device.account_id})
