"""Jinja filters for times, durations and numbers (UTC throughout, as stored)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask

from pooler.models import utcnow


def human_delta(seconds: float) -> str:
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


def ago(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    delta = (utcnow() - value).total_seconds()
    return f"in {human_delta(delta)}" if delta < 0 else f"{human_delta(delta)} ago"


def countdown(value: dt.datetime | None) -> str:
    if value is None:
        return "unknown"
    delta = (value - utcnow()).total_seconds()
    return "now" if delta <= 0 else f"in {human_delta(delta)}"


def when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


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


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(ago=ago, countdown=countdown, when=when, number=number, money=money)
    app.jinja_env.globals.update(now=utcnow)
