"""One presentation of a moment: relative and absolute with its time zone."""

from __future__ import annotations

import datetime as dt

from pooler.timefmt import clock, human_delta, moment_text, relative, timestamp

NOW = dt.datetime(2026, 12, 7, 15, 25, tzinfo=dt.UTC)


def test_human_delta() -> None:
    assert [human_delta(s) for s in (5, 61, 3600 + 5 * 60, 50 * 3600)] == ["5s", "1m", "1h 05m", "2d 2h"]


def test_clock_always_names_the_zone() -> None:
    assert clock(NOW + dt.timedelta(hours=2, minutes=33), NOW) == "17:58 UTC"
    assert clock(NOW + dt.timedelta(days=1), NOW) == "Tue 15:25 UTC"
    assert clock(NOW + dt.timedelta(days=10), NOW) == "2026-12-17 15:25 UTC"
    other_zone = dt.datetime(2026, 12, 7, 18, 58, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert clock(other_zone, NOW) == "17:58 UTC"


def test_moment_text_relative_and_absolute() -> None:
    assert moment_text(NOW + dt.timedelta(hours=2, minutes=33), NOW) == "in 2h 33m (17:58 UTC)"
    assert moment_text(NOW - dt.timedelta(minutes=5), NOW) == "5m ago (15:20 UTC)"
    assert relative(NOW, NOW) == "now"
    assert timestamp(NOW) == "2026-12-07 15:25:00 UTC"
