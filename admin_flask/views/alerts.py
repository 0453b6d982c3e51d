"""Alerts: what needs attention now (live rules + stored incidents), acknowledged, resolved; acknowledge and
silence in place (audited; owners anything, admins what concerns their pools, viewers read-only)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, flash, render_template, request, url_for
from sqlalchemy import select

from admin_flask import attention, auditing, back, security
from admin_flask.db import get_db
from admin_flask.forms import ActionForm
from pooler.alerts import incidents
from pooler.attention import ItemState, item_of
from pooler.models import AlertIncident, utcnow
from pooler.timefmt import human_delta

PREFIX = "/alerts"
bp = Blueprint("alerts", __name__)
TABS = ("open", "acknowledged", "resolved")


@bp.route("/")
def index() -> Any:
    tab = request.args.get("tab", "open")
    if tab not in TABS:
        tab = "open"
    db = get_db()
    now = utcnow()
    view = attention.Attention(db, security.current(), now)
    quiet = (ItemState.ACKNOWLEDGED, ItemState.SILENCED)
    if tab == "resolved":
        rows = db.scalars(
            select(AlertIncident)
            .where(AlertIncident.status == incidents.RESOLVED)
            .order_by(AlertIncident.resolved_at.desc(), AlertIncident.id.desc())
            .limit(attention.RESOLVED_SHOWN)
        )
        items = [
            item_of(f, now)
            for f in map(attention.facts_of, rows)
            if attention.in_scope(view.me, f.subject, view.key_pools)
        ]
    elif tab == "acknowledged":
        items = [i for i in view.items if i.state in quiet]
    else:
        items = [i for i in view.items if i.state not in quiet]
    return render_template(
        "alerts/index.html",
        tab=tab,
        tabs=TABS,
        items=items,
        view=view,
        counts={t: sum(1 for i in view.items if (i.state in quiet) == (t == "acknowledged")) for t in TABS[:2]},
        action=ActionForm(),
    )


def _incident_for_action(incident_id: int) -> AlertIncident:
    if not ActionForm().validate_on_submit():
        abort(400)
    db = get_db()
    row = db.get(AlertIncident, incident_id)
    view_keys = attention.key_pools(db)
    me = security.current()
    if row is None or not attention.in_scope(me, row.subject, view_keys):
        abort(404)
    if not attention.may_act(me, row.subject, view_keys):
        abort(403)
    return row


def _answer(changed: bool, done: str, nothing: str) -> Any:
    """Commit and say what was done, or roll back and say why nothing was; back to the page it came from."""
    db = get_db()
    if changed:
        db.commit()
        flash(done, "ok")
    else:
        db.rollback()
        flash(nothing, "error")
    return back.redirect_back(url_for("alerts.index"))


@bp.route("/<int:incident_id>/acknowledge", methods=["POST"])
def acknowledge(incident_id: int) -> Any:
    row = _incident_for_action(incident_id)
    changed = incidents.acknowledge(get_db(), row, actor=auditing.actor(), now=utcnow())
    return _answer(
        changed, f"Acknowledged: {row.title}.", "Nothing to acknowledge: it is resolved or already acknowledged."
    )


@bp.route("/<int:incident_id>/silence", methods=["POST"])
def silence(incident_id: int) -> Any:
    row = _incident_for_action(incident_id)
    minutes = request.form.get("minutes", type=int)
    if minutes not in attention.SILENCE_MINUTES:
        abort(400)  # the form offers only these; anything else was not sent by it
    changed = incidents.silence(get_db(), row, dt.timedelta(minutes=minutes), actor=auditing.actor(), now=utcnow())
    return _answer(
        changed, f"Silenced for {human_delta(minutes * 60)}: {row.title}.", "Nothing to silence: it is resolved."
    )
