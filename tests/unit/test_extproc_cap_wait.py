"""An attempt stopped only by the stream cap waits (bounded) for a stream to end, then picks again; released slots
wake it, and without one it gets the answer it would have had at once (a refusal or an overflow)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import processor as processor_module
from extproc.accesslog import AccessLogHandler
from extproc.admission import Deferred
from extproc.processor import BUSY, AttemptProcessor
from extproc.state import GatewayState
from pooler.crypto.hashing import KeyedHasher
from tests.unit.test_extproc_memory import _downstream, _message, _upstream

FORWARD = ep.ProcessingResponse(request_headers=ep.HeadersResponse())
REFUSED = ep.ProcessingResponse(immediate_response=ep.ImmediateResponse())


def _processor(answers: list[Any]) -> tuple[AttemptProcessor, list[bool]]:
    """A processor whose pick answers from `answers` (BUSY while the cap is full); records each pick's busy_ok."""
    state = GatewayState(cast(Any, SimpleNamespace(hasher=KeyedHasher(b"k" * 32))))
    gateway = AttemptProcessor(state)
    calls: list[bool] = []

    def pick(attempt: Any, busy_ok: bool = True) -> Any:
        calls.append(busy_ok)
        answer = answers.pop(0)
        return REFUSED if answer is BUSY and busy_ok else answer

    gateway._pick = pick  # type: ignore[method-assign]
    return gateway, calls


def _attempt() -> Any:
    return SimpleNamespace(now=0.0)


def test_a_free_pick_answers_at_once() -> None:
    gateway, calls = _processor([FORWARD])
    assert gateway._pick_or_wait(_attempt()) is FORWARD and calls == [False]


def test_a_released_slot_wakes_the_waiting_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor_module, "CAP_WAIT_SECONDS", 600.0)  # only a release can end the wait
    gateway, calls = _processor([BUSY, FORWARD])
    gateway.state.start("other", 7, time.time())
    deferred = gateway._pick_or_wait(_attempt())
    assert isinstance(deferred, Deferred)

    async def run() -> Any:
        waiting = asyncio.ensure_future(deferred.resolve())
        while not gateway.state._release_waiters:  # until the attempt waits
            await asyncio.sleep(0)
        gateway.state.finish("other")  # its stream ended: the slot is released
        return await asyncio.wait_for(waiting, 30)

    assert asyncio.run(run()) is FORWARD and calls == [False, False]


def test_without_a_release_the_attempt_gets_the_cap_answer_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor_module, "CAP_WAIT_SECONDS", 0.05)
    gateway, calls = _processor([BUSY, BUSY])
    deferred = gateway._pick_or_wait(_attempt())
    assert isinstance(deferred, Deferred)

    async def run() -> Any:
        return await deferred.resolve()

    assert asyncio.run(run()) is REFUSED
    assert calls == [False, True]  # the last pick may refuse (or overflow a session's busy account)


def test_a_sessions_requests_are_counted_until_their_log_entries() -> None:
    # What the wait asks of an attempt stopped by the cap: is it a session's next turn (at most one counted)?
    state = GatewayState(cast(Any, SimpleNamespace(hasher=KeyedHasher(b"k" * 32))))
    session = (1, "s-hash")
    state.start("turn-1", 7, 0.0, session)
    state.start("turn-2", 7, 0.0, session)
    state.start("turn-2", 8, 0.0, session)  # a retry of turn-2 on account 8: still one request of the session
    assert state.session_streams == {session: 2}
    state.finish("turn-1")
    assert state.session_streams == {session: 1}
    state.finish("turn-2")
    assert state.session_streams == {} and state.request_sessions == {} and state.in_flight == {}


def test_session_counts_stay_bounded_through_the_access_log() -> None:
    # Every request's downstream entry ends its session count: nothing is left after many requests.
    state = GatewayState(cast(Any, SimpleNamespace(hasher=KeyedHasher(b"k" * 32))))
    handler = AccessLogHandler(state)
    for n in range(2000):
        rid = f"r{n}"
        state.start(rid, 1, 1000.0, (1, f"session-{n % 7}"))
        state.start(rid, 2, 1000.0, (1, f"session-{n % 7}"))  # a failed-over second attempt
        handler.handle(_message(_upstream(rid, 429), _upstream(rid, 200), _downstream(rid, [1, 2])))
    assert state.session_streams == {} and state.request_sessions == {} and state.in_flight == {}
