"""Estimated cost from a vendored model pricing table, editable by owners (the `admin_model_pricing` setting of
pooler.settings' catalogue; unset = the vendored table)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pooler.audit import Actor
from pooler.models import RequestLog
from pooler.settings import get_json_setting, reset_setting, set_setting

PRICING_SETTING = "admin_model_pricing"
_VENDORED = Path(__file__).with_name("pricing.json")
Prices = dict[str, dict[str, float]]


def vendored() -> Prices:
    raw = json.loads(_VENDORED.read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def validate(data: Any) -> Prices:
    if not isinstance(data, dict):
        raise ValueError("pricing must be a JSON object of model -> {input, cached_input, output}")
    table: Prices = {}
    for model, prices in data.items():
        if str(model).startswith("_"):
            continue
        if not isinstance(prices, dict):
            raise ValueError(f"prices of {str(model)[:64]!r} must be an object")
        entry: dict[str, float] = {}
        for part in ("input", "cached_input", "output"):
            value = prices.get(part, 0)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{str(model)[:64]}.{part} must be a non-negative number")
            entry[part] = float(value)
        table[str(model)[:64]] = entry
    return table


def load(session: Session) -> Prices:
    stored = get_json_setting(session, PRICING_SETTING)
    if stored is not None:
        try:
            return validate(stored)
        except ValueError:
            # Set by hand (`pooler setting set`) to something the estimate cannot use: fall back, do not crash.
            pass
    return vendored()


def save(session: Session, table: Prices, actor: Actor) -> None:
    """Stores a validated table (audited by set_setting with its size, not its content)."""
    set_setting(session, PRICING_SETTING, validate(table), actor=actor)


def reset(session: Session, actor: Actor) -> None:
    reset_setting(session, PRICING_SETTING, actor=actor)


def estimate(table: Prices, model: str | None, input_tokens: int, cached: int, output: int) -> float:
    prices = table.get(model or "") or table.get("*") or {}
    fresh = max(0, input_tokens - cached)
    per = 1_000_000
    return (
        fresh * prices.get("input", 0.0) + cached * prices.get("cached_input", 0.0) + output * prices.get("output", 0.0)
    ) / per


def request_cost(table: Prices, row: RequestLog) -> float:
    """The list-price estimate of one logged request."""
    return estimate(table, row.model, row.input_tokens or 0, row.cached_tokens or 0, row.output_tokens or 0)


def costs_of(session: Session, rows: Sequence[RequestLog]) -> dict[int, float]:
    """Estimates for a page of logged requests, by request log id."""
    table = load(session)
    return {row.id: request_cost(table, row) for row in rows}
