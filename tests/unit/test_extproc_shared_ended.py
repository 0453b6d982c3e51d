"""Replica mode: a request whose access-log entry went to another replica still frees its slots here, once that
replica's request-log row exists."""

from __future__ import annotations

import asyncio

from extproc.shared import ENDED_CHECK_AFTER_SECONDS, SharedState
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
