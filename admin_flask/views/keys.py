"""Pool keys: create (raw key shown once), rotate, pause/resume, revoke; per-key usage from request logs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from admin_flask import auditing, scope
from admin_flask.db import core, get_db
from admin_flask.forms import KeyForm, lines
from pooler.errors import PoolerError
from pooler.models import PoolKey, RequestLog
from pooler.services import keys as key_service
from pooler.services.keys import CreatedKey

PREFIX = "/keys"
bp = Blueprint("keys", __name__)


def _usage(prefixes: list[str]) -> dict[str, tuple[int, int, dt.datetime | None]]:
    if not prefixes:
        return {}
    rows = (
        get_db()
        .execute(
            select(
                RequestLog.key_prefix,
                func.count(),
                func.coalesce(func.sum(RequestLog.total_tokens), 0),
                func.max(RequestLog.created_at),
            )
            .where(RequestLog.key_prefix.in_(prefixes))
            .group_by(RequestLog.key_prefix)
        )
        .all()
    )
    return {str(p): (int(n), int(t or 0), last) for p, n, t, last in rows}


def _show_once(created: CreatedKey, what: str) -> Any:
    # Rendered directly (never redirected through the session or a URL), with no-store: the raw key exists in
    # this one response only.
    response = render_template("keys/created.html", key=created.key, raw=created.raw, what=what)
    return response, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"}


@bp.route("/")
def index() -> Any:
    pool_id = request.args.get("pool", type=int)
    query = select(PoolKey).order_by(PoolKey.created_at.desc(), PoolKey.id.desc())
    ids = scope.visible_pool_ids()
    if ids is not None:
        query = query.where(PoolKey.pool_id.in_(ids or {-1}))
    if pool_id:
        scope.pool_or_404(pool_id)
        query = query.where(PoolKey.pool_id == pool_id)
    keys = list(get_db().scalars(query))
    form = KeyForm()
    form.pool_id.choices = [(p.id, p.name) for p in scope.visible_pools(include_archived=False)]
    if pool_id:
        form.pool_id.data = pool_id
    return render_template(
        "keys/index.html", keys=keys, usage=_usage([k.prefix for k in keys]), form=form, pool_id=pool_id
    )


@bp.route("/new", methods=["POST"])
def create() -> Any:
    form = KeyForm()
    form.pool_id.choices = [(p.id, p.name) for p in scope.visible_pools(include_archived=False)]
    if not form.validate_on_submit():
        for name, errors in form.errors.items():
            flash(f"{getattr(form, name).label.text}: {'; '.join(errors)}", "error")
        return redirect(url_for("keys.index"))
    pool = scope.pool_or_404(form.pool_id.data or 0)
    expires = form.expires_at.data.replace(tzinfo=dt.UTC) if form.expires_at.data else None
    db = get_db()
    try:
        created = key_service.create_key(
            db,
            core().hasher,
            pool=pool,
            label=form.label.data or "",
            actor=auditing.actor(),
            expires_at=expires,
            allowed_models=lines(form.allowed_models.data),
            requests_per_minute=form.requests_per_minute.data,
            tokens_per_day=form.tokens_per_day.data,
        )
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("keys.index"))
    db.commit()
    return _show_once(created, "created")


def _status(key_id: int, fn: Any, done: str) -> Any:
    key = scope.key_or_404(key_id)
    db = get_db()
    try:
        fn(db, key.prefix, actor=auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        flash(f"Key {key.prefix} {done}.", "ok")
    return redirect(url_for("keys.index", pool=request.form.get("pool") or None))


@bp.route("/<int:key_id>/pause", methods=["POST"])
def pause(key_id: int) -> Any:
    return _status(key_id, key_service.pause_key, "paused")


@bp.route("/<int:key_id>/resume", methods=["POST"])
def resume(key_id: int) -> Any:
    return _status(key_id, key_service.resume_key, "resumed")


@bp.route("/<int:key_id>/revoke", methods=["POST"])
def revoke(key_id: int) -> Any:
    return _status(key_id, key_service.revoke_key, "revoked")


@bp.route("/<int:key_id>/rotate", methods=["POST"])
def rotate(key_id: int) -> Any:
    key = scope.key_or_404(key_id)
    db = get_db()
    try:
        created = key_service.rotate_key(db, core().hasher, key.prefix, actor=auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("keys.index"))
    db.commit()
    return _show_once(created, "rotated")
