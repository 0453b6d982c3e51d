"""How the product writes a moment for an operator: one presentation everywhere (admin, readiness lines, alerts).

A future moment reads `in 2h 33m (17:58 UTC)`, a past one `5m ago (17:20 UTC)`, a full timestamp
`2026-12-07 17:58:00 UTC`. Times are stored and shown in UTC and always say so: an operator reading a line
and the quota bar beside it sees the same instant written the same way.
"""

from __future__ import annotations

import datetime as dt

ZONE = "UTC"


def human_delta(seconds: float) -> str:
    """`45s`, `12m`, `2h 05m`, `3d 4h` (sign dropped)."""
    seconds = abs(int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def clock(moment: dt.datetime, now: dt.datetime) -> str:
    """`17:58 UTC` today, `Tue 17:58 UTC` within six days, else `2026-12-20 17:58 UTC`."""
    moment = moment.astimezone(dt.UTC)
    if moment.date() == now.astimezone(dt.UTC).date():
        return f"{moment:%H:%M} {ZONE}"
    if abs(moment - now) < dt.timedelta(days=6):
        return f"{moment:%a %H:%M} {ZONE}"
    return f"{moment:%Y-%m-%d %H:%M} {ZONE}"


def relative(moment: dt.datetime, now: dt.datetime) -> str:
    """`in 2h 33m`, `now`, or `5m ago`."""
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {human_delta(delta)}" if delta > 0 else f"{human_delta(delta)} ago"


def moment_text(moment: dt.datetime, now: dt.datetime) -> str:
    """Relative and absolute: `in 2h 33m (17:58 UTC)`; the one form readiness lines and quota bars share."""
    return f"{relative(moment, now)} ({clock(moment, now)})"


def timestamp(moment: dt.datetime) -> str:
    """`2026-12-07 17:58:00 UTC`: tables and audit rows."""
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} {ZONE}"
