"""Replica mode: a request whose access-log entry went to another replica still frees its slots here, once that
replica's request-log row exists."""

from __future__ import annotations

import asyncio

import pytest

from extproc import shared as shared_module
from extproc.shared import ENDED_CHECK_AFTER_SECONDS, ENDED_CHECK_AFTER_WRITE_SECONDS, SharedState
from extproc.state import GatewayState
from pooler.context import CoreContext
from pooler.models import RequestLog, utcnow
from tests.support.admin import *  # noqa: F403


def test_requests_logged_by_another_replica_release_their_stream_slots(core_ctx: CoreContext) -> None:
    state = GatewayState(core_ctx)
    released: list[str] = []
    state.finish_hooks.append(released.append)  # admission's release
    now = utcnow().timestamp()
    state.start("ended-elsewhere", 7, now - 10)
    state.start("still-running", 7, now - 10)
    state.start("just-picked", 8, now)
    with core_ctx.session_factory.begin() as session:
        for rid in ("ended-elsewhere", "just-picked"):
            session.add(
                RequestLog(
                    created_at=utcnow(), request_id=rid, route_family="responses", method="POST", status_code=200
                )
            )
    assert ENDED_CHECK_AFTER_SECONDS < 10
    assert asyncio.run(SharedState(state).release_ended(now)) == 1  # too young to be looked up: just-picked
    assert state.in_flight == {7: 1, 8: 1}
    assert released == ["ended-elsewhere"]
    assert set(state.requests_in_flight) == {"still-running", "just-picked"}


def test_a_decision_worker_looks_its_requests_up_as_soon_as_rows_were_written(
    core_ctx: CoreContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pooler up`'s decision workers have no access log: every request ends at the receiver, which notifies
    when it wrote rows; the worker then looks up even requests picked a moment ago."""
    # No periodic check during the test: only the notification can release the request.
    monkeypatch.setattr(shared_module, "ENDED_CHECK_WORKER_SECONDS", 3600.0)
    state = GatewayState(core_ctx)
    shared = SharedState(state)

    async def scenario() -> set[str]:
        stop, written = asyncio.Event(), asyncio.Event()
        runner = asyncio.create_task(shared.run(stop, written))
        await asyncio.sleep(0)  # the first check finds nothing in flight
        now = utcnow().timestamp()
        state.start("fresh", 9, now - (ENDED_CHECK_AFTER_WRITE_SECONDS + 0.05))
        with core_ctx.session_factory.begin() as session:
            session.add(
                RequestLog(
                    created_at=utcnow(), request_id="fresh", route_family="responses", method="POST", status_code=200
                )
            )
        written.set()
        deadline = asyncio.get_running_loop().time() + 15
        while state.requests_in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        left = set(state.requests_in_flight)
        stop.set()
        await runner
        return left

    assert ENDED_CHECK_AFTER_WRITE_SECONDS < ENDED_CHECK_AFTER_SECONDS
    assert asyncio.run(scenario()) == set()
    assert state.in_flight == {}
