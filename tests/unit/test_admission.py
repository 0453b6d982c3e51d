"""AdmissionControl (extproc/admission.py) as pure logic: limits, queue size, queue deadline, release, reclaim.

No I/O: the queue waits are asyncio futures run with `asyncio.run`; the only clock is patched or a deadline of a
few tens of milliseconds that the test waits out (no assertion on how long anything took).
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import pytest

from extproc import admission
from extproc.admission import AdmissionControl
from pooler.gateway.features import Admission


def config(limit: int = 2, queue: int = 0, wait: float = 1.0, family: str = "responses") -> Admission:
    return Admission(MappingProxyType({family: limit}), queue, wait, 1)


def test_unlimited_family_unknown_family_or_no_request_id_are_admitted() -> None:
    ac = AdmissionControl()
    assert ac.try_acquire("compact", "r1", config()) is True  # no limit for this family
    assert ac.try_acquire(None, "r2", config()) is True
    assert ac.try_acquire("responses", None, config()) is True
    assert ac.try_acquire("responses", "r3", config(limit=0)) is True
    assert ac.active == {} and ac.owners == {}  # nothing counted, nothing to release


def test_limit_then_reject_without_a_queue() -> None:
    ac, cfg = AdmissionControl(), config(limit=2)
    assert ac.try_acquire("responses", "a", cfg) is True
    assert ac.try_acquire("responses", "b", cfg) is True
    assert ac.try_acquire("responses", "c", cfg) is False
    assert ac.active == {"responses": 2}
    # Limits are per family.
    assert ac.try_acquire("compact", "d", Admission(MappingProxyType({"compact": 1}))) is True


def test_a_retry_attempt_of_an_admitted_request_is_admitted_again() -> None:
    ac, cfg = AdmissionControl(), config(limit=1)
    assert ac.try_acquire("responses", "a", cfg) is True
    assert ac.try_acquire("responses", "a", cfg) is True
    assert ac.active == {"responses": 1}


def test_release_frees_the_slot_and_is_idempotent() -> None:
    ac, cfg = AdmissionControl(), config(limit=1)
    assert ac.try_acquire("responses", "a", cfg) is True
    ac.release("a")
    ac.release("a")
    ac.release("never-admitted")
    assert ac.active == {} and ac.owners == {}
    assert ac.try_acquire("responses", "b", cfg) is True


def test_queue_room_answers_none_and_a_full_queue_rejects() -> None:
    async def scenario() -> None:
        ac, cfg = AdmissionControl(), config(limit=1, queue=1, wait=5.0)
        assert ac.try_acquire("responses", "a", cfg) is True
        assert ac.try_acquire("responses", "b", cfg) is None  # queue has room: the caller waits
        waiter = asyncio.create_task(ac.wait("responses", "b", cfg))
        await asyncio.sleep(0)  # let it enqueue
        assert ac.try_acquire("responses", "c", cfg) is False  # queue (1) full
        ac.release("a")  # the slot passes to the waiter
        assert await waiter is True
        assert ac.active == {"responses": 1} and set(ac.owners) == {"b"}
        ac.release("b")
        assert ac.active == {}

    asyncio.run(scenario())


def test_a_new_request_does_not_overtake_waiters() -> None:
    async def scenario() -> None:
        ac, cfg = AdmissionControl(), config(limit=1, queue=2, wait=5.0)
        assert ac.try_acquire("responses", "a", cfg) is True
        first = asyncio.create_task(ac.wait("responses", "b", cfg))
        await asyncio.sleep(0)
        ac.release("a")
        # Even though a slot was just freed, it went to "b": a newcomer queues behind, it does not jump in.
        assert await first is True
        assert ac.try_acquire("responses", "c", cfg) is None

    asyncio.run(scenario())


def test_waiters_are_served_in_order() -> None:
    async def scenario() -> None:
        ac, cfg = AdmissionControl(), config(limit=1, queue=3, wait=5.0)
        assert ac.try_acquire("responses", "a", cfg) is True
        order: list[str] = []

        async def queued(rid: str) -> None:
            assert await ac.wait("responses", rid, cfg) is True
            order.append(rid)

        tasks = [asyncio.create_task(queued(r)) for r in ("b", "c", "d")]
        await asyncio.sleep(0)
        for holder in ("a", "b", "c"):
            ac.release(holder)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert order == ["b", "c", "d"]

    asyncio.run(scenario())


def test_queue_deadline_rejects_and_leaves_no_trace() -> None:
    async def scenario() -> None:
        ac, cfg = AdmissionControl(), config(limit=1, queue=1, wait=0.02)
        assert ac.try_acquire("responses", "a", cfg) is True
        assert await ac.wait("responses", "b", cfg) is False
        assert not ac.waiting["responses"] and "b" not in ac.owners
        ac.release("a")  # no stale waiter takes the slot
        assert ac.active == {}

    asyncio.run(scenario())


def test_no_queue_wait_configured_means_reject() -> None:
    ac = AdmissionControl()
    cfg = config(limit=1, queue=5, wait=0.0)
    assert ac.try_acquire("responses", "a", cfg) is True
    assert ac.try_acquire("responses", "b", cfg) is False


def test_slots_whose_access_log_never_came_are_reclaimed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(admission.time, "monotonic", lambda: clock[0])
    ac, cfg = AdmissionControl(), config(limit=64)
    for i in range(64):
        assert ac.try_acquire("responses", f"r{i}", cfg) is True
    assert ac.try_acquire("responses", "late", cfg) is False
    clock[0] += admission.SLOT_TTL_SECONDS + 1
    assert ac.try_acquire("responses", "late", cfg) is True
    assert set(ac.owners) == {"late"} and ac.active == {"responses": 1}


def test_a_request_that_ended_while_queued_is_never_handed_a_slot() -> None:
    """The access log reports a queued request finished (its client went away) before any slot was free: it
    leaves the queue, and the next free slot goes to the next waiter instead of leaking."""

    async def scenario() -> None:
        ac, cfg = AdmissionControl(), config(limit=1, queue=2, wait=5.0)
        assert ac.try_acquire("responses", "a", cfg) is True
        gone = asyncio.create_task(ac.wait("responses", "gone", cfg))
        nxt = asyncio.create_task(ac.wait("responses", "next", cfg))
        await asyncio.sleep(0)
        ac.release("gone")
        assert await gone is False
        ac.release("a")
        assert await nxt is True
        ac.release("next")
        assert ac.active == {} and ac.owners == {}

    asyncio.run(scenario())


def test_a_slot_handed_over_is_released_even_before_its_waiter_resumed() -> None:
    async def scenario() -> None:
        ac, cfg = AdmissionControl(), config(limit=1, queue=1, wait=5.0)
        assert ac.try_acquire("responses", "a", cfg) is True
        waiter = asyncio.create_task(ac.wait("responses", "b", cfg))
        await asyncio.sleep(0)
        ac.release("a")
        ac.release("b")  # its request already finished
        assert await waiter is True
        assert ac.active == {} and ac.owners == {}

    asyncio.run(scenario())
