"""DB-managed operational settings (secret ones write-only) and the model pricing table. Owners edit."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for

from admin_flask import auditing, pricing, security
from admin_flask.db import core, get_db
from admin_flask.forms import SettingForm
from pooler import settings as settings_service
from pooler.errors import PoolerError

PREFIX = "/settings"
bp = Blueprint("settings", __name__)


@bp.route("/")
def index() -> Any:
    db = get_db()
    table = pricing.load(db)
    views = settings_service.list_settings(db)
    return render_template(
        "settings/index.html",
        # JSON settings have their own editor below (the pricing panel), not a one-line input.
        settings=[v for v in views if not v.definition.is_json],
        form=SettingForm(),
        pricing_text=json.dumps(table, indent=2, sort_keys=True),
        pricing_default=next(v.is_default for v in views if v.definition.name == pricing.PRICING_SETTING),
    )


@bp.route("/<name>", methods=["POST"])
@security.owner_required
def update(name: str) -> Any:
    form = SettingForm()
    db = get_db()
    definition = settings_service.definition(name) if name in settings_service.CATALOGUE else None
    if definition is None or definition.is_json or not form.validate_on_submit():
        flash("Unknown setting or invalid form.", "error")
        return redirect(url_for("settings.index"))
    raw = form.value.data or ""
    if definition.secret and not raw:
        flash(f"{name}: left unchanged (secret values are write-only; type a new value to replace it).", "info")
        return redirect(url_for("settings.index"))
    try:
        settings_service.set_setting(db, name, raw, actor=auditing.actor(), box=core().box)
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        flash(f"{name} saved.", "ok")
    return redirect(url_for("settings.index"))


@bp.route("/<name>/reset", methods=["POST"])
@security.owner_required
def reset(name: str) -> Any:
    db = get_db()
    try:
        settings_service.reset_setting(db, name, actor=auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        flash(f"{name} reset to its default.", "ok")
    return redirect(url_for("settings.index"))


@bp.route("/pricing", methods=["POST"], endpoint="pricing")
@security.owner_required
def update_pricing() -> Any:
    form = SettingForm()
    db = get_db()
    try:
        table = pricing.validate(json.loads(form.value.data or ""))
    except (ValueError, json.JSONDecodeError) as exc:
        flash(f"Pricing not saved: {exc}", "error")
        return redirect(url_for("settings.index"))
    try:
        pricing.save(db, table, auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(f"Pricing not saved: {exc}", "error")
        return redirect(url_for("settings.index"))
    db.commit()
    flash("Model pricing saved.", "ok")
    return redirect(url_for("settings.index"))
