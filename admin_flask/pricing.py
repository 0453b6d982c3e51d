"""Estimated cost from a vendored model pricing table, editable by owners (stored as one DB setting row)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pooler.models import Setting, utcnow

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
    row = session.get(Setting, PRICING_SETTING)
    if row is not None and isinstance(row.value, dict) and isinstance(row.value.get("v"), dict):
        return dict(row.value["v"])
    return vendored()


def save(session: Session, table: Prices, actor: str) -> None:
    row = session.get(Setting, PRICING_SETTING)
    if row is None:
        row = Setting(name=PRICING_SETTING, value={})
        session.add(row)
    row.value, row.updated_at, row.updated_by = {"v": table}, utcnow(), actor


def estimate(table: Prices, model: str | None, input_tokens: int, cached: int, output: int) -> float:
    prices = table.get(model or "") or table.get("*") or {}
    fresh = max(0, input_tokens - cached)
    per = 1_000_000
    return (
        fresh * prices.get("input", 0.0) + cached * prices.get("cached_input", 0.0) + output * prices.get("output", 0.0)
    ) / per
