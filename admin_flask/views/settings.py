"""DB-managed operational settings, one form per group (pooler.settings' catalogue: group, kind and unit of each
setting), secret ones write-only; and the model pricing table edited as a table. Owners edit, everyone reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from admin_flask import auditing, pricing, security
from admin_flask.db import core, get_db
from admin_flask.settings_form import (
    PRICING_PARTS,
    GroupChanges,
    PricingForm,
    duration_text,
    parse_group,
    parse_pricing,
    pricing_rows,
)
from pooler import settings as settings_service
from pooler.errors import PoolerError
from pooler.settings import Kind, SettingView

PREFIX = "/settings"
bp = Blueprint("settings", __name__)


def slug(group: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")


def _groups(views: list[SettingView]) -> dict[str, list[SettingView]]:
    """Groups in catalogue order; JSON settings have their own editor (the pricing table), not a field."""
    groups: dict[str, list[SettingView]] = {}
    for view in views:
        if view.definition.kind is not Kind.JSON:
            groups.setdefault(view.definition.group, []).append(view)
    return groups


def _render(
    status: int = 200,
    *,
    failed_group: str | None = None,
    changes: GroupChanges | None = None,
    submitted: Mapping[str, str] | None = None,
    pricing_form: PricingForm | None = None,
) -> Any:
    db = get_db()
    views = settings_service.list_settings(db)
    table = pricing.load(db)
    return (
        render_template(
            "settings/index.html",
            groups=_groups(views),
            slug=slug,
            failed_group=failed_group,
            errors=changes.errors if changes else {},
            submitted=submitted or {},
            duration_text=duration_text,
            pricing_rows=pricing_form.rows if pricing_form else pricing_rows(table),
            pricing_errors=pricing_form.errors if pricing_form else {},
            pricing_parts=PRICING_PARTS,
            pricing_default=next(v.is_default for v in views if v.definition.name == pricing.PRICING_SETTING),
        ),
        status,
    )


@bp.route("/")
def index() -> Any:
    return _render()


@bp.route("/group/<group_slug>", methods=["POST"])
@security.owner_required
def update_group(group_slug: str) -> Any:
    db = get_db()
    groups = _groups(settings_service.list_settings(db))
    group = next((name for name in groups if slug(name) == group_slug), None)
    if group is None:
        flash("Unknown settings group.", "error")
        return redirect(url_for("settings.index"))
    changes = parse_group(groups[group], request.form)
    if changes.errors:
        flash(f"{group}: nothing saved, fix the fields marked below.", "error")
        return _render(400, failed_group=group, changes=changes, submitted=request.form)
    try:
        for name, value in changes.values.items():
            settings_service.set_setting(db, name, value, actor=auditing.actor(), box=core().box)
        for name in changes.resets:
            settings_service.reset_setting(db, name, actor=auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(f"{group}: nothing saved ({exc}).", "error")
        return redirect(url_for("settings.index", _anchor=group_slug))
    db.commit()
    count = len(changes.values) + len(changes.resets)
    flash(f"{group}: {count} setting{'s' if count != 1 else ''} saved." if count else f"{group}: no changes.", "ok")
    return redirect(url_for("settings.index", _anchor=group_slug))


@bp.route("/<name>/reset", methods=["POST"])
@security.owner_required
def reset(name: str) -> Any:
    db = get_db()
    try:
        definition = settings_service.definition(name)
        settings_service.reset_setting(db, name, actor=auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("settings.index"))
    db.commit()
    flash(f"{definition.title} reset to its default.", "ok")
    return redirect(url_for("settings.index", _anchor=slug(definition.group)))


@bp.route("/pricing", methods=["POST"], endpoint="pricing")
@security.owner_required
def update_pricing() -> Any:
    db = get_db()
    parsed = parse_pricing(request.form, request.form.get("rows", 0, type=int))
    if parsed.errors or not parsed.table:
        if not parsed.table and not parsed.errors:
            parsed.errors[0] = "The table needs at least one model (use Reset for the vendored table)."
        flash("Pricing not saved: fix the rows marked below.", "error")
        return _render(400, pricing_form=parsed)
    try:
        pricing.save(db, parsed.table, auditing.actor())
    except (PoolerError, ValueError) as exc:
        db.rollback()
        flash(f"Pricing not saved: {exc}", "error")
        return redirect(url_for("settings.index", _anchor="pricing"))
    db.commit()
    flash("Model pricing saved.", "ok")
    return redirect(url_for("settings.index", _anchor="pricing"))
