"""What one turn generates: the Responses API event sequence for a scripted or default answer.

The same events feed SSE, websocket frames and the non-streaming JSON body. "Tokens" are whitespace-led word
pieces of the configured text, so output token counts are predictable in tests.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pooler.simulator.accounts import Account
from pooler.simulator.bound import seal, wants_encrypted_reasoning
from pooler.simulator.state import SimState

DEFAULT_MODEL = "gpt-5.1-codex"


@dataclass
class TurnPlan:
    response_id: str
    model: str
    created_at: int
    text: str | None
    function_call: dict[str, Any] | None
    input_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    token_rate: float
    generate: bool = True
    output: list[dict[str, Any]] = field(default_factory=list)
    encrypted_reasoning: str | None = None
    """Sealed to the answering account: set when the body includes `reasoning.encrypted_content` and the turn
    reasons (reasoning tokens > 0); the reasoning output item carries it."""

    def output_tokens(self) -> int:
        if not self.generate:
            return 0
        text_tokens = len(pieces(self.text)) if self.text else 0
        call_tokens = len(pieces(self.function_call["arguments"])) if self.function_call else 0
        return text_tokens + call_tokens + self.reasoning_tokens

    def usage(self) -> dict[str, Any]:
        if not self.generate:
            inp = out = cached = reasoning = 0
        else:
            inp, out, cached, reasoning = (
                self.input_tokens,
                self.output_tokens(),
                self.cached_tokens,
                self.reasoning_tokens,
            )
        return {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": inp + out,
        }


def pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def count_input_tokens(body: dict[str, Any]) -> int:
    # ~4 characters per token over what the model would read; deterministic for a given body.
    chars = sum(len(json.dumps(body.get(k), separators=(",", ":"))) for k in ("instructions", "input", "tools"))
    return max(1, math.ceil(chars / 4))


def _function_call(spec: dict[str, Any]) -> dict[str, Any]:
    args = spec.get("arguments", {})
    return {
        "name": str(spec.get("name", "shell")),
        "arguments": args if isinstance(args, str) else json.dumps(args),
        "call_id": str(spec.get("call_id") or "call_" + secrets.token_hex(8)),
    }


def plan_turn(state: SimState, account: Account, body: dict[str, Any]) -> TurnPlan:
    """Chooses the answer (next scripted one, else the configured text) and the token figures."""
    script = state.scripts.popleft() if state.scripts and body.get("generate", True) is not False else {}
    model = str(body.get("model") or DEFAULT_MODEL)
    call = _function_call(script["function_call"]) if script.get("function_call") else None
    text: str | None = script.get("text", None if call else state.config.text)
    if text is not None:
        text = text.replace("{model}", model)
    input_tokens = count_input_tokens(body)
    cached = 0
    cache_key = body.get("prompt_cache_key")
    if isinstance(cache_key, str):
        # A prompt cache lives on one account: a repeat of the key there reads the previous prompt from cache
        # (a websocket warm-up, `generate: false`, fills the cache without being charged).
        cached = min(account.prompt_cache.get(cache_key, 0), input_tokens)
        account.prompt_cache[cache_key] = input_tokens
    response_id = "resp_" + secrets.token_hex(12)
    state.response_accounts[response_id] = account.account_id
    reasoning_tokens = int(script.get("reasoning_tokens", state.config.reasoning_tokens))
    generate = body.get("generate", True) is not False
    sealed = (
        seal(state.config.secret, account.account_id)
        if generate and reasoning_tokens > 0 and wants_encrypted_reasoning(body)
        else None
    )
    return TurnPlan(
        response_id=response_id,
        model=model,
        created_at=int(state.now()),
        text=text,
        function_call=call,
        input_tokens=input_tokens,
        cached_tokens=cached,
        reasoning_tokens=reasoning_tokens,
        token_rate=float(script.get("token_rate", state.config.token_rate)),
        generate=generate,
        encrypted_reasoning=sealed,
    )


def response_object(plan: TurnPlan, status: str, with_usage: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": plan.response_id,
        "object": "response",
        "created_at": plan.created_at,
        "status": status,
        "model": plan.model,
        "output": list(plan.output) if status == "completed" else [],
        "usage": plan.usage() if with_usage else None,
    }
    return obj


def events(plan: TurnPlan) -> Iterator[tuple[dict[str, Any], bool]]:
    """Yields (event, is_token_delta); pacing and faults are the transport's business."""
    seq = iter(range(1_000_000))

    def ev(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(seq), **fields}

    yield ev("response.created", response=response_object(plan, "in_progress", False)), False
    yield ev("response.in_progress", response=response_object(plan, "in_progress", False)), False
    index = 0
    if plan.encrypted_reasoning is not None:
        reasoning: dict[str, Any] = {"type": "reasoning", "id": "rs_" + secrets.token_hex(8), "summary": []}
        yield ev("response.output_item.added", output_index=index, item=reasoning), False
        sealed = {**reasoning, "encrypted_content": plan.encrypted_reasoning}
        plan.output.append(sealed)
        yield ev("response.output_item.done", output_index=index, item=sealed), False
        index += 1
    if plan.generate and plan.text is not None:
        item_id = "msg_" + secrets.token_hex(8)
        item = {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress", "content": []}
        yield ev("response.output_item.added", output_index=index, item=item), False
        part = {"type": "output_text", "text": "", "annotations": []}
        yield ev("response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=part), False
        for piece in pieces(plan.text):
            delta = ev("response.output_text.delta", item_id=item_id, output_index=index, content_index=0, delta=piece)
            yield delta, True
        yield (
            ev("response.output_text.done", item_id=item_id, output_index=index, content_index=0, text=plan.text),
            False,
        )
        part = {"type": "output_text", "text": plan.text, "annotations": []}
        yield ev("response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part), False
        done = {**item, "status": "completed", "content": [part]}
        plan.output.append(done)
        yield ev("response.output_item.done", output_index=index, item=done), False
        index += 1
    if plan.generate and plan.function_call is not None:
        call = plan.function_call
        item_id = "fc_" + secrets.token_hex(8)
        item = {"type": "function_call", "id": item_id, "status": "in_progress", **call, "arguments": ""}
        yield ev("response.output_item.added", output_index=index, item=item), False
        for piece in pieces(call["arguments"]):
            yield ev("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=piece), True
        args = call["arguments"]
        yield ev("response.function_call_arguments.done", item_id=item_id, output_index=index, arguments=args), False
        done = {**item, "status": "completed", "arguments": args}
        plan.output.append(done)
        yield ev("response.output_item.done", output_index=index, item=done), False
    yield ev("response.completed", response=response_object(plan, "completed", True)), False
