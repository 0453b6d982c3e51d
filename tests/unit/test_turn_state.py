"""Which account an echoed x-codex-turn-state belongs to (pooler/turn_state.py): learnt at its first echo."""

from __future__ import annotations

import pytest

from pooler import turn_state
from pooler.turn_state import TURN_STATE_TTL_SECONDS, TurnStateIssuers, forwards_turn_state


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
    monkeypatch.setattr(turn_state, "MAX_TURN_STATES", 2)
    for i in range(5):
        issuers.issuer(f"t{i}", i, later)
    assert list(issuers.entries) == ["t3", "t4"]
