"""The model pricing table (USD per 1M tokens): what a request costs, for the admin's estimates and for money
budgets on the data path. Pure except `vendored()`, which reads the table shipped with the package; the stored
table is the `admin_model_pricing` DB setting (unset = the vendored one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PRICING_SETTING = "admin_model_pricing"
_VENDORED = Path(__file__).with_name("pricing.json")
Prices = dict[str, dict[str, float]]
PER_TOKENS = 1_000_000


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


def usable(stored: Any) -> Prices:
    """The stored table if it is valid, else the vendored one (a table set by hand to something the estimate
    cannot use must not crash the admin or the gateway)."""
    if stored is not None:
        try:
            return validate(stored)
        except ValueError:
            pass
    return vendored()


def estimate(table: Prices, model: str | None, input_tokens: int, cached: int, output: int) -> float:
    """USD of one request: cached input tokens (a part of `input_tokens`, as the upstream reports them) at the
    cached price, the rest of the input at the input price, output (reasoning included) at the output price.
    A model the table does not name costs the `*` row's prices (none: free)."""
    prices = table.get(model or "") or table.get("*") or {}
    fresh = max(0, input_tokens - cached)
    return (
        fresh * prices.get("input", 0.0) + cached * prices.get("cached_input", 0.0) + output * prices.get("output", 0.0)
    ) / PER_TOKENS
