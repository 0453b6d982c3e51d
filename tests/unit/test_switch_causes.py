"""Switch causes: why a conversation's request is not on its sticky account (pure rules)."""

from __future__ import annotations

import pytest

from pooler.gateway import switch_causes as sc
from pooler.selection import reasons


def cause(**overrides: object) -> str | None:
    facts: dict[str, object] = {
        "has_session": True,
        "previous_cause": None,
        "sticky_account": 1,
        "sticky_live": True,
        "picked": 2,
        "sticky_reason": reasons.QUOTA_EXHAUSTED,
    }
    facts.update(overrides)
    return sc.pick_cause(**facts)  # type: ignore[arg-type]


def test_a_kept_session_has_no_cause() -> None:
    assert cause(picked=1) is None


def test_requests_without_a_session_or_on_their_first_turn() -> None:
    assert cause(has_session=False) == sc.NO_SESSION
    assert cause(sticky_account=None) == sc.FIRST_TURN
    # A retry of the first turn is still the first turn (the first attempt pinned the session in memory).
    assert cause(previous_cause=sc.FIRST_TURN, sticky_reason=reasons.ALREADY_TRIED) == sc.FIRST_TURN


def test_an_expired_sticky_account_that_was_left() -> None:
    assert cause(sticky_live=False) == sc.STICKY_EXPIRED
    assert cause(sticky_live=False, picked=1) is None  # the strategy happened to pick the same account


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (reasons.QUOTA_EXHAUSTED, sc.ACCOUNT_SPENT),
        (reasons.QUOTA_CAP, sc.ACCOUNT_SPENT),
        (reasons.RATE_LIMITED, sc.ACCOUNT_SPENT),
        (reasons.DEMOTED, sc.ACCOUNT_DEMOTED),
        (reasons.account_state_reason("paused"), sc.ACCOUNT_DEACTIVATED),
        (reasons.REFRESH_REQUESTED, sc.ACCOUNT_DEACTIVATED),
        (reasons.CONCURRENCY_CAP, sc.ACCOUNT_BUSY),
        (reasons.ALREADY_TRIED, sc.FAILED_OVER),
        (None, sc.ACCOUNT_DEACTIVATED),  # no longer in the pool
        ("file_pinned", sc.OTHER),
    ],
)
def test_a_move_is_named_by_why_the_sticky_account_was_left(reason: str | None, expected: str) -> None:
    assert cause(sticky_reason=reason) == expected


def test_a_failed_over_move_is_named_by_what_the_failed_attempt_answered() -> None:
    assert sc.refine_cause(sc.FAILED_OVER, [429, 200]) == sc.ACCOUNT_SPENT
    assert sc.refine_cause(sc.FAILED_OVER, [401, 200]) == sc.ACCOUNT_DEACTIVATED
    assert sc.refine_cause(sc.FAILED_OVER, [503, 200]) == sc.ACCOUNT_DEMOTED
    assert sc.refine_cause(sc.FAILED_OVER, [None, 200]) == sc.ACCOUNT_DEMOTED
    assert sc.refine_cause(sc.FAILED_OVER, [400, 200]) == sc.FAILED_OVER
    assert sc.refine_cause(sc.FIRST_TURN, [429, 200]) == sc.FIRST_TURN
    assert sc.refine_cause(None, []) is None


def test_every_cause_is_listed_once_and_fits_its_column() -> None:
    assert len(set(sc.SWITCH_CAUSES)) == len(sc.SWITCH_CAUSES)
    assert all(len(c) <= 32 for c in sc.SWITCH_CAUSES)
    assert sc.FIRST_TURN not in sc.MOVES and sc.NO_SESSION not in sc.MOVES and sc.ACCOUNT_SPENT in sc.MOVES
