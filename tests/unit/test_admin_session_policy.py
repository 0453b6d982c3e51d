"""Pure policy of admin sign-in: when a session has ended, the browser summary kept, single-use TOTP steps."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest

from pooler.services.admin_sessions import EndReason, end_reason, summarize_user_agent
from pooler.services.operators import totp_step

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
IDLE = dt.timedelta(minutes=30)
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _reason(*, revoked: bool = False, expires_in: float = 3600, idle_for: float = 0) -> EndReason | None:
    return end_reason(
        revoked_at=NOW if revoked else None,
        expires_at=NOW + dt.timedelta(seconds=expires_in),
        last_seen_at=NOW - dt.timedelta(seconds=idle_for),
        now=NOW,
        idle=IDLE,
    )


def test_end_reason() -> None:
    assert _reason() is None
    assert _reason(idle_for=IDLE.total_seconds() - 1) is None
    assert _reason(idle_for=IDLE.total_seconds()) == EndReason.IDLE
    assert _reason(expires_in=0) == EndReason.EXPIRED
    # Revocation wins over everything, expiry over idleness.
    assert _reason(revoked=True, expires_in=-5, idle_for=9999) == EndReason.REVOKED
    assert _reason(expires_in=-5, idle_for=9999) == EndReason.EXPIRED


@pytest.mark.parametrize(
    ("header", "summary"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
            "Chrome on Linux",
        ),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Windows"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
            "Safari on macOS",
        ),
        ("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/131.0 Safari/537.36 Edg/131.0", "Edge on Windows"),
        ("curl/8.5.0", "curl"),
        ("\x00\x01 weird", "unknown"),
        ("", None),
        (None, None),
    ],
)
def test_user_agent_summary(header: str | None, summary: str | None) -> None:
    assert summarize_user_agent(header) == summary


def test_user_agent_summary_is_bounded() -> None:
    summary = summarize_user_agent("x" * 5000)
    assert summary is not None and len(summary) <= 41


def test_totp_step_single_use_within_the_drift_window() -> None:
    totp = pyotp.TOTP(SEED)
    step = totp.timecode(NOW)
    code = totp.at(NOW)
    assert totp_step(SEED, code, NOW) == step
    assert totp_step(SEED, f" {code[:3]} {code[3:]} ", NOW) == step  # spaces as apps display them
    assert totp_step(SEED, code, NOW, after=step) is None  # replay
    # A code one step older than the last one used is a replay too, though still inside the drift window.
    assert totp_step(SEED, totp.at(NOW - dt.timedelta(seconds=30)), NOW, after=step) is None
    assert totp_step(SEED, totp.at(NOW + dt.timedelta(seconds=30)), NOW, after=step) == step + 1
    assert totp_step(SEED, totp.at(NOW - dt.timedelta(seconds=30)), NOW, after=step - 2) == step - 1
    assert totp_step(SEED, totp.at(NOW + dt.timedelta(seconds=60)), NOW) is None  # outside the window
    assert totp_step(SEED, "abcdef", NOW) is None
