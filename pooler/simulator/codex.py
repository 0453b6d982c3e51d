"""The Codex backend: `/backend-api/codex/responses` (SSE, JSON, websocket), `/responses/compact`, `/models`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from pooler.simulator.accounts import Account
from pooler.simulator.bodies import error_body, read_body
from pooler.simulator.bound import BoundStateError, answer_turn_state, check_request, seal
from pooler.simulator.faults import Fault
from pooler.simulator.journal import Entry, body_installations
from pooler.simulator.state import SimState
from pooler.simulator.turn import TurnPlan, events, plan_turn, response_object
from pooler.simulator.usage import (
    limit_error,
    limit_response,
    not_included_response,
    quota_headers,
    rate_limits_event,
)

HTTP_STREAM_FAULTS = {"close_mid_stream", "malformed_sse", "fail_event"}
WS_STREAM_FAULTS = {"close_mid_stream", "malformed_sse", "ws_close", "fail_event"}
# The real upstream ends a websocket after 60 minutes (by the simulated clock here).
WS_MAX_AGE_SECONDS = 3600
TURN_STATE_HEADER = "x-codex-turn-state"
OPENING_EVENTS = frozenset({"response.created", "response.in_progress"})
MALFORMED_SSE = b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "delta": \n\n'


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def failed_event(plan: TurnPlan, code: str) -> dict[str, Any]:
    """The upstream giving up on a turn inside a 200 stream (e.g. server_is_overloaded)."""
    failed = response_object(plan, "failed", False)
    failed["error"] = {"code": code, "message": "The turn failed upstream."}
    return {"type": "response.failed", "response": failed}


def _turn_state(request: web.Request) -> str:
    """This account's turn-state token for the answer (the journal already names the echo's issuer)."""
    state: SimState = request.app["state"]
    account: Account = request["sim_account"]
    return answer_turn_state(request.headers.get(TURN_STATE_HEADER), account.account_id, state.turn_states)


def _bound_state_error(state: SimState, account: Account, body: dict[str, Any]) -> BoundStateError | None:
    return check_request(body, account.account_id, state.response_accounts, state.config.secret)


def _finish(state: SimState, account: Account, plan: TurnPlan, entry: Entry) -> None:
    usage = plan.usage()
    account.accrue(int(usage["total_tokens"]), state.now())
    entry.usage = usage


class Pacer:
    """Spaces token deltas at the configured or faulted rate and tells when a stream fault fires."""

    def __init__(self, rate: float, fault: Fault | None, start_pause: float = 0.0) -> None:
        self.rate, self.fault, self.sent, self.fired = rate, fault, 0, False
        self.start_pause = start_pause
        """Seconds to wait once, before the first event after the opening ones (`slow_start`)."""

    async def before(self, opening: bool) -> None:
        if self.start_pause > 0 and not opening:
            pause, self.start_pause = self.start_pause, 0.0
            await asyncio.sleep(pause)

    def due(self, is_token: bool, is_terminal: bool, opening: bool = False) -> Fault | None:
        """`opening`: the event is `response.created`/`response.in_progress`. A failure event before any delta
        (`after_tokens` 0) comes right after them, as the real backend fails a turn it cannot start (no output
        item is announced first)."""
        if self.fault is None or self.fired:
            return None
        first = self.fault.kind == "fail_event" and self.fault.after_tokens == 0 and not opening
        if first or (is_token and self.sent >= self.fault.after_tokens) or is_terminal:
            self.fired = True
            return self.fault
        return None

    async def tick(self) -> None:
        if self.rate > 0:
            await asyncio.sleep(1.0 / self.rate)
        self.sent += 1


def _stream_setup(
    state: SimState, account: Account, body: dict[str, Any], transport: str, entry: Entry
) -> tuple[TurnPlan, Pacer]:
    plan = plan_turn(state, account, body)
    entry.model = plan.model
    kinds = HTTP_STREAM_FAULTS if transport == "http" else WS_STREAM_FAULTS
    fault = state.faults.take(kinds, "responses", account.account_id, transport)
    slow = state.faults.take({"slow"}, "responses", account.account_id, transport)
    slow_start = state.faults.take({"slow_start"}, "responses", account.account_id, transport)
    entry.fault = ",".join(f.kind for f in (fault, slow, slow_start) if f) or entry.fault
    rate = slow.token_rate if slow else plan.token_rate
    return plan, Pacer(rate, fault, slow_start.seconds if slow_start else 0.0)


async def responses_post(request: web.Request) -> web.StreamResponse:
    state: SimState = request.app["state"]
    account: Account = request["sim_account"]
    entry: Entry = request["sim_entry"]
    body = await read_body(request)
    entry.body_installations = body_installations(body)
    now = state.now()
    if str(body.get("model")) in account.excluded_models:
        return not_included_response(account, now, str(body.get("model")))
    if account.exhausted_until(now) is not None:
        return limit_response(account, now)
    bound = _bound_state_error(state, account, body)
    if bound is not None:
        return web.json_response(bound.body(), status=400, headers={"x-request-id": secrets.token_hex(8)})
    headers = {
        **quota_headers(account, now),
        "x-request-id": secrets.token_hex(8),
        TURN_STATE_HEADER: _turn_state(request),
    }
    plan, pacer = _stream_setup(state, account, body, "http", entry)
    if body.get("stream") is False:
        for _ in events(plan):
            pass
        _finish(state, account, plan, entry)
        return web.json_response(response_object(plan, "completed", True), headers=headers)
    resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for event, is_token in events(plan):
        terminal = event["type"] == "response.completed"
        opening = event["type"] in OPENING_EVENTS
        await pacer.before(opening)
        fault = pacer.due(is_token, terminal, opening)
        if fault is not None and fault.kind == "close_mid_stream":
            # Drop the TCP connection with the chunked body unfinished: the client sees a truncated stream.
            if request.transport is not None:
                request.transport.abort()
            return resp
        if fault is not None and fault.kind == "malformed_sse":
            await resp.write(MALFORMED_SSE)
        if fault is not None and fault.kind == "fail_event":
            await resp.write(_sse(failed_event(plan, fault.code)))
            await resp.write_eof()
            return resp
        if is_token:
            await pacer.tick()
        if terminal:
            _finish(state, account, plan, entry)
        await resp.write(_sse(event))
    await resp.write_eof()
    return resp


async def responses_ws(request: web.Request) -> web.StreamResponse:
    state: SimState = request.app["state"]
    account: Account = request["sim_account"]
    entry: Entry = request["sim_entry"]
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response(error_body("use POST or a websocket upgrade", "upgrade_required"), status=426)
    if "responses_websockets" not in request.headers.get("OpenAI-Beta", ""):
        return web.json_response(
            error_body("websocket transport needs OpenAI-Beta: responses_websockets=...", "missing_beta_header"),
            status=400,
        )
    ws = web.WebSocketResponse(max_msg_size=0, compress=True, autoping=True)
    ws.headers.update(quota_headers(account, state.now()))
    ws.headers.update(_upgrade_headers(request))
    await ws.prepare(request)
    entry.status = 101
    request["sim_ws_opened"] = state.now()
    await ws.send_str(json.dumps(rate_limits_event(account, state.now())))
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            frame = json.loads(msg.data)
        except json.JSONDecodeError:
            await _ws_error(ws, 400, error_body("frame is not JSON", "invalid_json"))
            continue
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "response.create":
            if not await _ws_turn(request, ws, frame):
                break
        elif kind in ("response.append", "response.processed"):
            _journal_frame(request, str(kind))
        else:
            await _ws_error(ws, 400, error_body(f"unknown event type {kind!r}", "unknown_event"))
    return ws


def _upgrade_headers(request: web.Request) -> dict[str, str]:
    """What Codex reads from the 101: the turn-state token, the models ETag (a change makes it refetch the
    catalogue), the model that serves (here the one the turn metadata names) and that reasoning is included."""
    headers = {TURN_STATE_HEADER: _turn_state(request), "x-models-etag": MODELS_ETAG, "x-reasoning-included": "true"}
    try:
        metadata = json.loads(request.headers.get("x-codex-turn-metadata", ""))
    except ValueError:
        metadata = None
    model = metadata.get("model") if isinstance(metadata, dict) else None
    if isinstance(model, str) and model.isprintable():
        headers["openai-model"] = model
    return headers


def _journal_frame(request: web.Request, kind: str) -> Entry:
    state: SimState = request.app["state"]
    parent: Entry = request["sim_entry"]
    return state.journal.record(
        time=state.now(),
        method="WS",
        path=parent.path,
        route="responses",
        transport="websocket",
        account=parent.account,
        bearer_fingerprint=parent.bearer_fingerprint,
        authorization=parent.authorization,
        note=kind,
    )


async def _ws_error(ws: web.WebSocketResponse, status: int, body: dict[str, Any], headers: Any = None) -> None:
    await ws.send_str(json.dumps({"type": "error", "status": status, "error": body["error"], "headers": headers or {}}))


async def _ws_turn(request: web.Request, ws: web.WebSocketResponse, frame: dict[str, Any]) -> bool:
    """Answers one `response.create`; False when the connection was closed by a fault."""
    state: SimState = request.app["state"]
    account: Account = request["sim_account"]
    entry = _journal_frame(request, "response.create")
    body = frame["response"] if isinstance(frame.get("response"), dict) else frame
    now = state.now()
    if now - request["sim_ws_opened"] >= WS_MAX_AGE_SECONDS:
        entry.status = 400
        msg = "Websocket connection reached its 60 minute limit; open a new connection."
        await _ws_error(ws, 400, error_body(msg, "websocket_connection_limit_reached"))
        await ws.close()
        return False
    if account.exhausted_until(now) is not None:
        entry.status = 429
        await _ws_error(ws, 429, limit_error(account, now), quota_headers(account, now))
        return True
    bound = _bound_state_error(state, account, body)
    if bound is not None:
        entry.status = 400
        await _ws_error(ws, 400, bound.body())
        return True
    plan, pacer = _stream_setup(state, account, body, "websocket", entry)
    await ws.send_str(json.dumps(rate_limits_event(account, now)))
    for event, is_token in events(plan):
        terminal = event["type"] == "response.completed"
        opening = event["type"] in OPENING_EVENTS
        await pacer.before(opening)
        fault = pacer.due(is_token, terminal, opening)
        if fault is not None and fault.kind == "close_mid_stream":
            entry.status = 499
            if request.transport is not None:
                request.transport.abort()  # no close frame: an abrupt TCP drop
            return False
        if fault is not None and fault.kind == "ws_close":
            entry.status = 499
            await ws.close(code=1000, message=b"")  # a clean close, but no terminal event
            return False
        if fault is not None and fault.kind == "malformed_sse":
            await ws.send_str('{"type": "response.output_text.delta", "delta": ')
        if is_token:
            await pacer.tick()
        if terminal:
            _finish(state, account, plan, entry)
            entry.status = 200
        await ws.send_str(json.dumps(event, separators=(",", ":")))
    return True


async def compact(request: web.Request) -> web.Response:
    state: SimState = request.app["state"]
    account: Account = request["sim_account"]
    body = await read_body(request)
    now = state.now()
    if account.exhausted_until(now) is not None:
        return limit_response(account, now)
    bound = _bound_state_error(state, account, body)
    if bound is not None:
        return web.json_response(bound.body(), status=400)
    raw_items = body.get("input")
    items: list[Any] = raw_items if isinstance(raw_items, list) else []
    summary = f"Summary of {len(items)} earlier items."
    output = [
        {
            "type": "message",
            "id": "msg_" + secrets.token_hex(8),
            "role": "assistant",
            "content": [{"type": "output_text", "text": summary}],
        },
        # The compacted history travels on as an item sealed to this account, like the real backend's.
        {"type": "compaction", "encrypted_content": seal(state.config.secret, account.account_id)},
    ]
    plan = plan_turn(state, account, {**body, "prompt_cache_key": None})
    plan.text = summary
    _finish(state, account, plan, request["sim_entry"])
    headers = {**quota_headers(account, state.now()), TURN_STATE_HEADER: _turn_state(request)}
    return web.json_response({"output": output}, headers=headers)


def _model(slug: str, name: str, priority: int) -> dict[str, Any]:
    return {
        "slug": slug,
        "display_name": name,
        "description": f"{name} (simulated)",
        "default_reasoning_level": "medium",
        "supported_reasoning_levels": [{"effort": e, "description": e} for e in ("low", "medium", "high")],
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": True,
        "priority": priority,
        "context_window": 272000,
        "input_modalities": ["text", "image"],
    }


MODELS = [_model("gpt-5.1-codex", "GPT-5.1 Codex", 1), _model("gpt-5.1-codex-mini", "GPT-5.1 Codex Mini", 2)]
MODELS_BODY = json.dumps({"models": MODELS}, separators=(",", ":"))
MODELS_ETAG = '"' + hashlib.sha256(MODELS_BODY.encode()).hexdigest()[:16] + '"'


async def models(request: web.Request) -> web.Response:
    account: Account = request["sim_account"]
    state: SimState = request.app["state"]
    headers = {**quota_headers(account, state.now()), "ETag": MODELS_ETAG}
    if request.headers.get("If-None-Match") == MODELS_ETAG:
        return web.Response(status=304, headers=headers)
    return web.Response(text=MODELS_BODY, content_type="application/json", headers=headers)
