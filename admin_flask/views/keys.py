"""Pool keys: create (raw key shown once), rotate, pause/resume, revoke; per-key usage from request logs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from admin_flask import auditing, scope
from admin_flask.db import change, core, get_db
from admin_flask.forms import BudgetsForm, KeyForm, lines
from pooler.budgets import BudgetState
from pooler.errors import PoolerError
from pooler.gateway.budgets import key_share_windows, load_budget_book, pool_account_windows
from pooler.models import PoolKey, RequestLog, utcnow
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
    budget_states, shares = _limits()
    return render_template(
        "keys/index.html",
        keys=keys,
        usage=_usage([k.prefix for k in keys]),
        form=form,
        pool_id=pool_id,
        budgets=budget_states,
        shares=shares,
        key_share=key_service.key_share,
        budgets_form=BudgetsForm(),
        budget_spec=key_service.budget_spec,
        key_budgets=key_service.key_budgets,
    )


def _share(form: KeyForm | BudgetsForm) -> key_service.KeyShareSpec:
    return key_service.KeyShareSpec(form.share_percent.data, form.share_team.data, bool(form.share_pacing.data))


def _limits() -> tuple[dict[str, list[BudgetState]], dict[str, Any]]:
    """Each budgeted key's budgets with what it used in the current period, and each share key's share used vs
    allowed (from the request logs and the stored quota windows)."""
    now = utcnow()
    db = get_db()
    book = load_budget_book(db, now)
    windows = pool_account_windows(db, {s.pool_id for s in book.shares.values()}, now.timestamp())
    return book.key_states(now.timestamp()), key_share_windows(book, windows, now.timestamp())


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
            budgets=[key_service.parse_budget(line) for line in lines(form.budgets.data) or []],
            share=_share(form),
        )
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("keys.index"))
    db.commit()
    return _show_once(created, "created")


@bp.route("/<int:key_id>/budgets", methods=["POST"])
def budgets(key_id: int) -> Any:
    """Replaces the key's budgets with the lines of the form (empty: none) and sets its quota share."""
    key = scope.key_or_404(key_id)
    form = BudgetsForm()
    db = get_db()
    try:
        if not form.validate_on_submit():
            raise PoolerError("; ".join(e for errors in form.errors.values() for e in errors))
        parsed = [key_service.parse_budget(line) for line in lines(form.budgets.data) or []]
        key_service.set_budgets(db, key.prefix, parsed, actor=auditing.actor())
        key_service.set_share(db, key.prefix, _share(form), actor=auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        flash(f"Budgets and share of key {key.prefix} saved.", "ok")
    return redirect(url_for("keys.index", pool_id=key.pool_id))


def _status(key_id: int, fn: Any, done: str) -> Any:
    key, actor = scope.key_or_404(key_id), auditing.actor()
    change(lambda db: fn(db, key.prefix, actor=actor), f"Key {key.prefix} {done}.")
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
