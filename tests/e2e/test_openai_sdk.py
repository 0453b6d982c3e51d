"""The official `openai` Python SDK against the real gateway (Envoy + ext_proc) and the simulator: /v1 models,
responses and chat completions, streaming and not, tools, JSON schema, errors, failover, key limits and request
logs. Assertions are on parsed SDK objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from pooler.models import UpstreamAccount
from pooler.v1.models import DEFAULT_MODELS
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e
MODEL = "gpt-5.1-codex"
TEXT = "Hello from the Codex simulator. The pool works."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def gw(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(postgres_url, tmp_path_factory.mktemp("v1-gateway")) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def seeded(gw: Gateway) -> SeededPool:
    return gw.seed_pool("v1-sdk", ["acct-v1a", "acct-v1b"])


@pytest.fixture
def client(gw: Gateway, seeded: SeededPool) -> Iterator[openai.OpenAI]:
    gw.simulator.client.clear_script()
    gw.simulator.client.clear_faults()
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=seeded.key, max_retries=0, timeout=30) as sdk:
        yield sdk


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == list(DEFAULT_MODELS)
    assert all(m.object == "model" and m.owned_by == "openai" for m in models.data)
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


def test_responses_create_not_streaming(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Say hello", max_output_tokens=50, temperature=0.3)
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_responses_create_streaming(client: openai.OpenAI) -> None:
    stream = client.responses.create(model=MODEL, input="Say hello", stream=True)
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == TEXT
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None


def test_responses_function_call(gw: Gateway, client: openai.OpenAI) -> None:
    gw.simulator.client.script_function_call("get_weather", {"city": "Paris"}, call_id="call_w1")
    response = client.responses.create(
        model=MODEL,
        input="Weather in Paris?",
        tools=[{"type": "function", **WEATHER_TOOL["function"]}],  # type: ignore[list-item]
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather" and calls[0].call_id == "call_w1"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}


def test_chat_not_streaming(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        temperature=0.1,
        max_tokens=30,
    )
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == TEXT
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_chat_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_chat_tools_not_streaming_then_tool_result(gw: Gateway, client: openai.OpenAI) -> None:
    gw.simulator.client.script_function_call("get_weather", {"city": "Paris"}, call_id="call_c1")
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris?"}]
    completion = client.chat.completions.create(
        model=MODEL,
        messages=messages,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "call_c1" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    # The tool result goes back as a `tool` message (-> function_call_output upstream); the answer is text.
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C"},
    ]
    follow_up = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type,list-item]
    assert follow_up.choices[0].message.content == TEXT


def test_chat_tools_streaming(gw: Gateway, client: openai.OpenAI) -> None:
    gw.simulator.client.script_function_call("get_weather", {"city": "Oslo", "unit": "c"}, call_id="call_s1")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    ids, names, args, finish = [], [], "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            ids += [call.id] if call.id else []
            names += [call.function.name] if call.function and call.function.name else []
            args += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert ids == ["call_s1"] and names == ["get_weather"]
    assert json.loads(args) == {"city": "Oslo", "unit": "c"}
    assert finish == "tool_calls"


class Person(BaseModel):
    name: str
    age: int


def test_chat_json_schema_parse(gw: Gateway, client: openai.OpenAI) -> None:
    gw.simulator.client.script({"text": '{"name": "Ada", "age": 36}'})
    completion = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "A person"}], response_format=Person
    )
    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)


def test_responses_json_schema_parse(gw: Gateway, client: openai.OpenAI) -> None:
    gw.simulator.client.script({"text": '{"name": "Lin", "age": 7}'})
    response = client.responses.parse(model=MODEL, input="A person", text_format=Person)
    assert response.output_parsed == Person(name="Lin", age=7)


def test_errors_are_openai_shaped(gw: Gateway, seeded: SeededPool, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.code == "unsupported_endpoint"
    # The shared pool: a body rejected after the account pick (status-0 attempt without an upstream-failure
    # flag) must not demote the picked account.
    seen = {row.id for row in gw.request_logs(pool_id=seeded.pool_id)}
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[])
    assert bad.value.param == "messages"

    def rejected_row() -> object:
        rows = [r for r in gw.request_logs(pool_id=seeded.pool_id) if r.id not in seen and r.status_code == 400]
        return rows[0] if rows else None

    row = wait_until(rejected_row, timeout=15, what="the rejected request's log row")
    with gw.ctx.session_factory() as session:
        account = session.get(UpstreamAccount, row.attempts[0].account_id)  # type: ignore[attr-defined]
        assert account is not None and account.demoted_until is None
    assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}]).choices
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="cpk_not_a_key", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()


def test_failover_and_request_log(gw: Gateway, seeded: SeededPool, client: openai.OpenAI) -> None:
    """The first account answers 429: the SDK still gets the completion, from the other account; the request
    log shows two attempts and the /v1 route family, with tokens reported by the ext_proc."""
    seen = {row.id for row in gw.request_logs(pool_id=seeded.pool_id)}
    gw.simulator.client.add_fault("status", status=429, count=1)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == TEXT

    def failover_row() -> object:
        # Rows of earlier tests may still be arriving (batched writes): find this request's by its shape.
        rows = [r for r in gw.request_logs(pool_id=seeded.pool_id) if r.id not in seen and len(r.attempts) == 2]
        return rows[0] if rows else None

    row = wait_until(failover_row, timeout=15, what="the failover request's log row")
    assert row.status_code == 200 and row.route_family == "v1"  # type: ignore[attr-defined]
    assert row.total_tokens and row.output_tokens  # type: ignore[attr-defined]


def test_key_request_limit(gw: Gateway) -> None:
    # seed_pool's readiness probe (one usage request) counts against the key too.
    limited = gw.seed_pool("v1-limited", ["acct-v1c"], key_fields={"requests_per_minute": 2})
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=limited.key, max_retries=0) as sdk:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError) as info:
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers.get("retry-after")


def test_no_prompt_or_key_in_logs(gw: Gateway, seeded: SeededPool, client: openai.OpenAI, tmp_path: Path) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "canary-v1-prompt-7731"}])
    for name, text in gw.process_logs().items():
        assert "canary-v1-prompt-7731" not in text, name
        assert seeded.key not in text, name
