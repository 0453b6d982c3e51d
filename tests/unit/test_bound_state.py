"""Account-bound session state (pooler/gateway/bound_state.py): the issuer of an echoed x-codex-turn-state,
learnt at its first echo, and the sticky account a request with sealed items keeps."""

from __future__ import annotations

import pytest

from pooler.gateway import bound_state
from pooler.gateway.bound_state import (
    TURN_STATE_TTL_SECONDS,
    TurnStateIssuers,
    forwards_turn_state,
    keeps_sealed_session,
)
from pooler.selection.types import AccountCandidate, PoolPolicy, SelectionRequest
from pooler.states import AccountState, AssignmentStatus, PoolStatus


def test_a_turn_state_goes_only_to_the_account_that_issued_it() -> None:
    assert forwards_turn_state(1, 1)
    assert not forwards_turn_state(1, 2)
    assert not forwards_turn_state(None, 1)  # issuer unknown: never forwarded


def test_the_issuer_is_the_sessions_account_at_the_first_echo_and_then_stays() -> None:
    issuers = TurnStateIssuers()
    assert issuers.issuer("t-a", 1, 100.0) == 1
    # The session moved to account 2 (Codex still echoes the turn's first token): the issuer is still 1.
    assert issuers.issuer("t-a", 2, 101.0) == 1
    # First seen without a sticky account: unknown for its lifetime, even once the session has one.
    assert issuers.issuer("t-b", None, 102.0) is None
    assert issuers.issuer("t-b", 2, 103.0) is None


def test_issuers_expire_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    issuers = TurnStateIssuers()
    issuers.issuer("old", 1, 0.0)
    issuers.issuer("new", 2, TURN_STATE_TTL_SECONDS - 1)
    later = TURN_STATE_TTL_SECONDS + 1
    # "old" expired: its next echo is a first echo again (the session's account then), and it is pruned.
    assert issuers.issuer("old", 3, later) == 3
    assert list(issuers.entries) == ["new", "old"]
    monkeypatch.setattr(bound_state, "MAX_TURN_STATES", 2)
    for i in range(5):
        issuers.issuer(f"t{i}", i, later)
    assert list(issuers.entries) == ["t3", "t4"]


def _candidate(**fields: object) -> AccountCandidate:
    base: dict[str, object] = {
        "account_id": 7,
        "label": "home",
        "plan_type": "plus",
        "state": AccountState.ACTIVE,
        "assignment_status": AssignmentStatus.ACTIVE,
        "priority": 1,
        "access_token_expires_at": None,
        "demoted_until": 150.0,
        "limited_until": None,
        "refresh_requested": False,
        "has_token": True,
    }
    return AccountCandidate(**{**base, **fields})  # type: ignore[arg-type]


def test_sealed_state_keeps_its_account_only_through_a_demotion() -> None:
    policy = PoolPolicy(pool_status=PoolStatus.ACTIVE, strategy="round-robin", max_concurrency_per_account=2)
    now = SelectionRequest(now=100.0)
    assert keeps_sealed_session(_candidate(), policy, now)
    assert not keeps_sealed_session(_candidate(demoted_until=None), policy, now)  # eligible: selection's own pick
    assert not keeps_sealed_session(_candidate(demoted_until=90.0), policy, now)  # demotion over
    # Anything more than a demotion: moving is the only way on (and the upstream's answer says the rest).
    assert not keeps_sealed_session(_candidate(limited_until=200.0), policy, now)
    assert not keeps_sealed_session(_candidate(refresh_requested=True), policy, now)
    assert not keeps_sealed_session(_candidate(assignment_status=AssignmentStatus.PAUSED), policy, now)
    assert not keeps_sealed_session(_candidate(), policy, SelectionRequest(now=100.0, exclude=frozenset({7})))
    assert not keeps_sealed_session(_candidate(), policy, SelectionRequest(now=100.0, in_flight={7: 2}))
