"""Pools: list with readiness summaries, create (owner), edit routing settings, pause/resume, archive."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from sqlalchemy import func, select

from admin_flask import attention, auditing, back, queries, scope, security
from admin_flask.db import get_db
from admin_flask.forms import ActionForm, PoolForm, lines
from pooler.attention import pool_badge, worst
from pooler.errors import PoolerError
from pooler.models import PoolKey, UpstreamAccount, utcnow
from pooler.readiness import pool_summary
from pooler.services import pools as pool_service
from pooler.states import KeyStatus, PoolStatus

PREFIX = "/pools"
bp = Blueprint("pools", __name__)


@bp.route("/")
def index() -> Any:
    pools = scope.visible_pools()
    db = get_db()
    keys = queries.pairs(
        db,
        select(PoolKey.pool_id, func.count()).where(PoolKey.status == KeyStatus.ACTIVE).group_by(PoolKey.pool_id),
    )
    ready = queries.readiness_by_pool(db, pools)
    view = attention.Attention(db, security.current(), utcnow())
    return render_template(
        "pools/index.html",
        pools=pools,
        readiness=ready,
        badges=queries.pool_badges(db, pools, ready),
        view=view,
        worst={p.id: worst(view.for_pool(p.id)) for p in pools},
        keys=keys,
        action=ActionForm(),
    )


@bp.route("/new", methods=["GET", "POST"])
@security.owner_required
def new() -> Any:
    form = PoolForm()
    if form.validate_on_submit():
        db = get_db()
        try:
            pool = pool_service.create_pool(
                db,
                name=form.name.data or "",
                label=form.label.data,
                strategy=form.strategy.data or "",
                sticky_ttl_seconds=form.sticky_ttl_seconds.data,
                max_attempts=form.max_attempts.data or 3,
                allowed_models=lines(form.allowed_models.data),
                actor=auditing.actor(),
            )
            # Caps and concurrency are not create_pool arguments: set them in the same transaction.
            pool_service.update_pool_settings(db, pool.name, actor=auditing.actor(), **_form_settings(form))
        except PoolerError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash(f"Pool {pool.name} created.", "ok")
            return redirect(url_for("pools.show", pool_id=pool.id))
    return render_template("pools/form.html", form=form, pool=None)


def _form_settings(form: PoolForm) -> dict[str, Any]:
    """The routing settings of the form as keywords of `pool_service.update_pool_settings`."""
    return {
        "label": form.label.data or "",
        "strategy": form.strategy.data or "",
        "sticky_ttl_seconds": form.sticky_ttl_seconds.data,
        "max_attempts": form.max_attempts.data,
        "primary_cap_percent": form.primary_cap_percent.data,
        "secondary_cap_percent": form.secondary_cap_percent.data,
        "max_concurrency_per_account": form.max_concurrency_per_account.data,
        "allowed_models": lines(form.allowed_models.data),
    }


@bp.route("/<int:pool_id>")
def show(pool_id: int) -> Any:
    pool = scope.pool_or_404(pool_id)
    db = get_db()
    now = utcnow()
    accounts = list(
        db.scalars(
            queries.account_query()
            .where(UpstreamAccount.assignments.any(pool_id=pool.id))
            .order_by(UpstreamAccount.label)
        ).unique()
    )
    cards = queries.cards(db, accounts, now)
    only = {pool.id: pool}
    stale = queries.stale_after(db)
    per_pool = [(c, queries.readiness_of(c.account, only, now, stale)) for c in cards]
    keys = list(db.scalars(select(PoolKey).where(PoolKey.pool_id == pool.id).order_by(PoolKey.created_at)))
    live = [r for c, r in per_pool if c.account.deleted_at is None]
    view = attention.Attention(db, security.current(), now)
    return render_template(
        "pools/show.html",
        pool=pool,
        per_pool=per_pool,
        keys=keys,
        summary=pool_summary(live, now),
        badge=pool_badge(pool.status, sum(1 for r in live if r.routable), len(live), queries.min_routable(db)),
        view=view,
        items=view.for_pool(pool.id),
        action=ActionForm(),
    )


@bp.route("/<int:pool_id>/edit", methods=["GET", "POST"])
def edit(pool_id: int) -> Any:
    pool = scope.pool_or_404(pool_id)
    if pool.status == PoolStatus.ARCHIVED:
        flash("Archived pools cannot be edited.", "error")
        return redirect(url_for("pools.show", pool_id=pool.id))
    form = PoolForm(obj=pool.settings)
    if not form.is_submitted():
        form.name.data, form.label.data = pool.name, pool.label
        form.allowed_models.data = "\n".join(pool.settings.allowed_models or [])
    form.name.data = pool.name  # the slug is fixed: CLI scripts and keys refer to it
    if form.validate_on_submit():
        db = get_db()
        try:
            changes = pool_service.update_pool_settings(db, pool.name, actor=auditing.actor(), **_form_settings(form))
        except PoolerError as exc:
            db.rollback()
            flash(str(exc), "error")
            return render_template("pools/form.html", form=form, pool=pool), 400
        db.commit()
        flash("Settings saved." if changes else "Nothing changed.", "ok")
        return redirect(url_for("pools.show", pool_id=pool.id))
    return render_template("pools/form.html", form=form, pool=pool)


def _status_action(pool_id: int, fn: Any, done: str) -> Any:
    pool = scope.pool_or_404(pool_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    db = get_db()
    try:
        fn(db, pool.name, actor=auditing.actor())
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        flash(f"Pool {pool.name} {done}.", "ok")
    return back.redirect_back(url_for("pools.show", pool_id=pool.id))


@bp.route("/<int:pool_id>/pause", methods=["POST"])
def pause(pool_id: int) -> Any:
    return _status_action(pool_id, pool_service.pause_pool, "paused")


@bp.route("/<int:pool_id>/resume", methods=["POST"])
def resume(pool_id: int) -> Any:
    return _status_action(pool_id, pool_service.resume_pool, "resumed")


@bp.route("/<int:pool_id>/archive", methods=["POST"])
@security.owner_required
def archive(pool_id: int) -> Any:
    """Archiving stops routing and revokes nothing: keys of an archived pool are refused by the gateway."""
    _status_action(pool_id, pool_service.archive_pool, "archived")
    return redirect(url_for("pools.index"))
