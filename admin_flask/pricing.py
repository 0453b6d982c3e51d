"""Estimated cost from the model pricing table (pooler.pricing), editable by owners (the `admin_model_pricing`
setting of pooler.settings' catalogue; unset = the vendored table)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from pooler.audit import Actor
from pooler.models import RequestLog
from pooler.pricing import PRICING_SETTING, Prices, estimate, usable, validate, vendored
from pooler.settings import get_json_setting, reset_setting, set_setting

__all__ = ["PRICING_SETTING", "Prices", "estimate", "load", "reset", "save", "validate", "vendored"]


def load(session: Session) -> Prices:
    return usable(get_json_setting(session, PRICING_SETTING))


def save(session: Session, table: Prices, actor: Actor) -> None:
    """Stores a validated table (audited by set_setting with its size, not its content)."""
    set_setting(session, PRICING_SETTING, validate(table), actor=actor)


def reset(session: Session, actor: Actor) -> None:
    reset_setting(session, PRICING_SETTING, actor=actor)


def request_cost(table: Prices, row: RequestLog) -> float:
    """The list-price estimate of one logged request."""
    return estimate(table, row.model, row.input_tokens or 0, row.cached_tokens or 0, row.output_tokens or 0)


def costs_of(session: Session, rows: Sequence[RequestLog]) -> dict[int, float]:
    """Estimates for a page of logged requests, by request log id."""
    table = load(session)
    return {row.id: request_cost(table, row) for row in rows}
