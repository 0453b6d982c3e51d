"""Pure lifecycle decisions: the transition table, refresh due-ness, backoff and quota derivation."""

from __future__ import annotations

import datetime as dt

import pytest

from pooler import lifecycle
from pooler.lifecycle import WindowEvidence, exhausted_until, refresh_due_reason
from pooler.states import AccountState as S

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
STALE = dt.timedelta(minutes=30)


def test_every_state_has_a_row_and_deleted_is_terminal() -> None:
    assert set(lifecycle.ALLOWED_TRANSITIONS) == set(S)
    assert lifecycle.ALLOWED_TRANSITIONS[S.DELETED] == frozenset()
    for old in S:
        if old != S.DELETED:
            assert lifecycle.can_transition(old, S.DELETED)


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (S.ACTIVE, S.REFRESHING, True),
        (S.REFRESHING, S.ACTIVE, True),
        (S.REFRESHING, S.REAUTH_REQUIRED, True),
        (S.ACTIVE, S.QUOTA_EXHAUSTED, True),
        (S.QUOTA_EXHAUSTED, S.ACTIVE, True),
        (S.REAUTH_REQUIRED, S.REFRESHING, False),
        (S.REAUTH_REQUIRED, S.ACTIVE, True),
        (S.PAUSED, S.QUOTA_EXHAUSTED, False),
        (S.DELETED, S.ACTIVE, False),
    ],
)
def test_transition_table(old: S, new: S, allowed: bool) -> None:
    assert lifecycle.can_transition(old, new) is allowed


def test_routable_states() -> None:
    assert lifecycle.is_routable_state(S.ACTIVE)
    assert lifecycle.is_routable_state(S.REFRESH_FAILED)  # a still-valid token keeps serving
    for state in (S.PAUSED, S.REAUTH_REQUIRED, S.QUOTA_EXHAUSTED, S.DELETED):
        assert not lifecycle.is_routable_state(state)


def due(**kw: object) -> str | None:
    args: dict[str, object] = {
        "now": NOW,
        "access_token_expires_at": NOW + 5 * 24 * H,
        "last_refresh_at": NOW - 24 * H,
        "refresh_requested_at": None,
    }
    args.update(kw)
    return refresh_due_reason(**args)  # type: ignore[arg-type]


def test_refresh_due_reasons() -> None:
    assert due() is None
    assert due(access_token_expires_at=NOW + 23 * H) == "expiring"
    assert due(access_token_expires_at=NOW - H) == "expiring"
    assert due(last_refresh_at=NOW - 8 * 24 * H) == "stale"
    assert due(refresh_requested_at=NOW - H) == "requested"
    # A 401 flagged before the latest refresh was already answered by it.
    assert due(refresh_requested_at=NOW - 25 * H) is None
    assert due(access_token_expires_at=None, last_refresh_at=None) == "expiry_unknown"
    assert due(access_token_expires_at=NOW + 48 * H, horizon=72 * H) == "expiring"
    # An account put in refresh_due (expired import, operator request) is refreshed at the next tick.
    assert due(state=S.REFRESH_DUE) == "state"
    assert due(state=S.ACTIVE) is None


def test_exponential_backoff_doubles_and_caps() -> None:
    minutes = [lifecycle.poll_backoff(n).total_seconds() / 60 for n in range(0, 8)]
    assert minutes == [0, 1, 2, 4, 8, 16, 30, 30]
    assert lifecycle.refresh_backoff(1000) == lifecycle.REFRESH_BACKOFF_CAP


def w(used: float, resets_in: dt.timedelta | None, age: dt.timedelta = dt.timedelta(0)) -> WindowEvidence:
    return WindowEvidence(used, None if resets_in is None else NOW + resets_in, NOW - age)


def test_no_windows_is_never_exhausted() -> None:
    assert exhausted_until([], NOW, STALE) is None


def test_full_window_with_future_reset_is_exhausted_until_the_latest_reset() -> None:
    assert exhausted_until([w(100, H), w(40, 2 * H)], NOW, STALE) == NOW + H
    assert exhausted_until([w(100, H), w(100, 24 * H)], NOW, STALE) == NOW + 24 * H
    # Old evidence of a reached limit still counts until its reset.
    assert exhausted_until([w(100, H, age=3 * H)], NOW, STALE) == NOW + H


def test_passed_reset_or_room_left_is_not_exhausted() -> None:
    assert exhausted_until([w(100, -dt.timedelta(seconds=1))], NOW, STALE) is None
    assert exhausted_until([w(99.9, H)], NOW, STALE) is None


def test_unknown_reset_counts_only_while_fresh() -> None:
    assert exhausted_until([w(100, None, age=dt.timedelta(minutes=5))], NOW, STALE) == NOW + dt.timedelta(minutes=25)
    assert exhausted_until([w(100, None, age=H)], NOW, STALE) is None


def test_quota_state_change_only_between_active_and_exhausted() -> None:
    assert lifecycle.quota_state_change(S.ACTIVE, True) == S.QUOTA_EXHAUSTED
    assert lifecycle.quota_state_change(S.QUOTA_EXHAUSTED, False) == S.ACTIVE
    assert lifecycle.quota_state_change(S.ACTIVE, False) is None
    assert lifecycle.quota_state_change(S.PAUSED, True) is None
    assert lifecycle.quota_state_change(S.REAUTH_REQUIRED, False) is None
