"""Pools: list with readiness summaries, create (owner), edit routing settings, pause/resume, archive, cache health."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from sqlalchemy import select

from admin_flask import attention, auditing, back, queries, scope, security
from admin_flask.charts import Series, line_chart
from admin_flask.db import change, get_db
from admin_flask.forms import ActionForm, PoolForm, lines
from pooler.attention import pool_badge, worst
from pooler.errors import PoolerError
from pooler.gateway.budgets import key_share_windows, load_budget_book, pool_account_windows
from pooler.gateway.switch_causes import CAUSE_TEXT, MOVES
from pooler.models import PoolKey, utcnow
from pooler.readiness import pool_summary
from pooler.services import pools as pool_service
from pooler.services import views
from pooler.services.cache_health import cache_health, share
from pooler.share import WINDOW_NAMES, pool_used_percent, projected_exhaustion
from pooler.states import KeyStatus, PoolStatus

PREFIX = "/pools"
bp = Blueprint("pools", __name__)


@bp.route("/")
def index() -> Any:
    pools = scope.visible_pools()
    db = get_db()
    keys = views.key_counts(db, KeyStatus.ACTIVE)
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
        "time_zone": form.time_zone.data or "UTC",
    }


@bp.route("/<int:pool_id>")
def show(pool_id: int) -> Any:
    pool = scope.pool_or_404(pool_id)
    db = get_db()
    now = utcnow()
    accounts = list(db.scalars(queries.account_query(pool_id=pool.id)).unique())
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
        capacity=_capacity(pool.id, keys),
    )


@bp.route("/<int:pool_id>/cache")
def cache(pool_id: int) -> Any:
    """Prompt-cache health of the pool over the last 24 h: cached input share per hour, per account, conversation
    switches by cause and the sessions that moved most (pooler.services.cache_health)."""
    pool = scope.pool_or_404(pool_id)
    db = get_db()
    now = utcnow()
    health = cache_health(db, pool.id, now)
    labels = views.account_labels(db)
    shares = [b.share or 0.0 for b in health.buckets]
    moves = [float(b.moves) for b in health.buckets]
    hours = [b.start.strftime("%H:%M") for b in health.buckets]
    return render_template(
        "pools/cache.html",
        pool=pool,
        health=health,
        share_chart=line_chart([Series("cached share %", shares)], hours, title=f"Cached input share in {pool.name}"),
        moves_chart=line_chart([Series("moves", moves)], hours, title=f"Conversation moves in {pool.name}"),
        accounts=[(labels.get(a, "(none)") if a else "(none)", a, i, c, share(c, i)) for a, i, c in health.by_account],
        keys=[(prefix or "(none)", i, c, share(c, i)) for prefix, i, c in health.by_key],
        explain=CAUSE_TEXT,
        moves=MOVES,
        refreshed=now,
    )


def _capacity(pool_id: int, keys: list[PoolKey]) -> dict[str, Any]:
    """The pool's used capacity per window kind, when it runs out at the current rate, and its keys' shares."""
    db = get_db()
    now = utcnow()
    windows = pool_account_windows(db, [pool_id], now.timestamp())[pool_id]
    kinds = []
    for minutes, name in WINDOW_NAMES.items():
        measured = pool_used_percent(windows, minutes)
        at = projected_exhaustion(windows, minutes, now.timestamp())
        kinds.append(
            {
                "window": name,
                "used_percent": None if measured is None else measured[0],
                "exhausted_at": None if at is None else dt.datetime.fromtimestamp(at, dt.UTC),
            }
        )
    book = load_budget_book(db, now)
    prefixes = {k.prefix for k in keys}
    shares = {p: w for p, w in key_share_windows(book, {pool_id: windows}, now.timestamp()).items() if p in prefixes}
    return {"windows": kinds, "shares": shares}


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
    actor = auditing.actor()
    change(lambda db: fn(db, pool.name, actor=actor), f"Pool {pool.name} {done}.")
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
