"""Jinja filters for times, durations and numbers: every moment is written by pooler.timefmt, with its zone."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask

from pooler.models import utcnow
from pooler.timefmt import moment_text, timestamp


def ago(value: dt.datetime | None) -> str:
    """`5m ago (15:20 UTC)`: relative and absolute, like every moment the admin shows."""
    return "never" if value is None else moment_text(value, utcnow())


def countdown(value: dt.datetime | None) -> str:
    """`in 2h 33m (17:58 UTC)`: the quota bars' and readiness lines' shared form."""
    return "unknown" if value is None else moment_text(value, utcnow())


def when(value: dt.datetime | None) -> str:
    return "-" if value is None else timestamp(value)


def number(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def cost(value: float | None) -> str:
    """A per-request estimate: cents hide most single requests, so small amounts keep four decimals."""
    if value is None:
        return "-"
    return f"${value:,.4f}" if 0 < value < 1 else f"${value:,.2f}"


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(ago=ago, countdown=countdown, when=when, number=number, money=money, cost=cost)
    app.jinja_env.globals.update(now=utcnow)
