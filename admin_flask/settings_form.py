"""Pure parsing of the grouped settings forms and the pricing table (no I/O, unit-tested).

One form per settings group: a field is written only when its value differs from the effective one, an empty
field (not a secret) goes back to the default, an empty secret is left unchanged, and an unticked toggle is
`False`. Every error names its field, so the page can show it next to the input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from admin_flask import pricing
from pooler.errors import PoolerError
from pooler.settings import JsonObject, Kind, SettingValue, SettingView, Unit

RESET = object()
"""A change that removes the stored value (back to the catalogue default)."""
PRICING_PARTS = ("input", "cached_input", "output")
PRICING_BLANK_ROWS = 3
"""Empty rows under the table for adding models without JavaScript."""


@dataclass
class GroupChanges:
    values: dict[str, SettingValue | JsonObject] = field(default_factory=dict)
    resets: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def parse_group(views: Sequence[SettingView], form: Mapping[str, str]) -> GroupChanges:
    """What a submitted group form changes; nothing is written when `errors` is not empty."""
    out = GroupChanges()
    for view in views:
        d = view.definition
        if d.kind is Kind.JSON:
            continue
        if d.kind is Kind.TOGGLE:
            wanted: object = d.name in form
        else:
            raw = form.get(d.name, "").strip()
            if not raw:
                if d.kind is not Kind.SECRET and not view.is_default:
                    out.resets.append(d.name)
                continue
            wanted = raw
        try:
            value = d.coerce(wanted)
        except PoolerError as exc:
            out.errors[d.name] = str(exc).replace(f"setting {d.name} ", "")
            continue
        if d.kind is Kind.SECRET or value != view.value:
            out.values[d.name] = value
    return out


def duration_text(value: object, unit: Unit) -> str:
    """`3600 seconds` -> `1h`: the readable form shown next to a duration input ('' when not a whole unit)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return ""
    seconds = {
        Unit.MILLISECONDS: 0.001,
        Unit.SECONDS: 1,
        Unit.MINUTES: 60,
        Unit.HOURS: 3600,
        Unit.DAYS: 86400,
    }.get(unit)
    if seconds is None:
        return ""
    total = value * seconds
    for suffix, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if total >= size and total % size == 0:
            return f"{total / size:g}{suffix}"
    return ""


@dataclass
class PricingForm:
    rows: list[tuple[str, dict[str, str]]]
    """(model, part -> submitted text), in the submitted order: re-rendered as typed when there are errors."""
    errors: dict[int, str] = field(default_factory=dict)
    """Row index -> what is wrong with it."""
    table: pricing.Prices = field(default_factory=dict)


def pricing_rows(table: pricing.Prices) -> list[tuple[str, dict[str, str]]]:
    """The table as form rows (`*` last), plus blank rows for new models."""
    ordered = sorted(table.items(), key=lambda kv: (kv[0] == "*", kv[0]))
    rows = [(model, {part: f"{prices.get(part, 0.0):g}" for part in PRICING_PARTS}) for model, prices in ordered]
    return rows + [("", dict.fromkeys(PRICING_PARTS, "")) for _ in range(PRICING_BLANK_ROWS)]


def parse_pricing(form: Mapping[str, str], count: int) -> PricingForm:
    """Rows `model-N`, `input-N`, `cached_input-N`, `output-N` for N < count; a row without a model is dropped."""
    out = PricingForm(rows=[])
    seen: set[str] = set()
    for i in range(min(count, 500)):
        model = form.get(f"model-{i}", "").strip()[:64]
        texts = {part: form.get(f"{part}-{i}", "").strip() for part in PRICING_PARTS}
        out.rows.append((model, texts))
        if not model:
            continue
        if model in seen:
            out.errors[i] = f"{model} is listed twice"
            continue
        seen.add(model)
        prices: dict[str, float] = {}
        for part, text in texts.items():
            try:
                number = float(text or "0")
            except ValueError:
                out.errors[i] = f"{part.replace('_', ' ')} must be a number"
                break
            if not math.isfinite(number) or number < 0:
                out.errors[i] = f"{part.replace('_', ' ')} must be zero or more"
                break
            prices[part] = number
        else:
            out.table[model] = prices
    return out
