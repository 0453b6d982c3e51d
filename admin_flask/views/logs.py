"""Request logs (metadata only): filter by pool, key, account, status class, model and time; paged."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, render_template, request
from sqlalchemy import select

from admin_flask import queries, scope, security
from admin_flask.db import get_db
from pooler.models import PoolKey, RequestLog, UpstreamAccount, utcnow

PREFIX = "/logs"
bp = Blueprint("logs", __name__)
PAGE_SIZE = 50
SINCE = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}


@bp.route("/")
def index() -> Any:
    db = get_db()
    args = {k: v for k, v in request.args.items() if v and k != "page"}
    page = max(1, request.args.get("page", 1, type=int))
    query = select(RequestLog)
    ids = scope.visible_pool_ids()
    if ids is not None:
        query = query.where(RequestLog.pool_id.in_(ids or {-1}))
    if pool_id := request.args.get("pool", type=int):
        scope.pool_or_404(pool_id)
        query = query.where(RequestLog.pool_id == pool_id)
    if key := request.args.get("key"):
        row = db.scalar(select(PoolKey).where(PoolKey.prefix == key[:16]))
        if row is None or not security.current().sees_pool(row.pool_id):
            abort(404)
        query = query.where(RequestLog.key_prefix == row.prefix)
    if account_id := request.args.get("account", type=int):
        scope.account_or_404(account_id)
        query = query.where(RequestLog.account_id == account_id)
    if status := request.args.get("status"):
        if status not in ("2xx", "3xx", "4xx", "5xx"):
            abort(400)
        low = int(status[0]) * 100
        query = query.where(RequestLog.status_code >= low, RequestLog.status_code < low + 100)
    if model := request.args.get("model"):
        query = query.where(RequestLog.model == model[:64])
    if since := SINCE.get(request.args.get("since", "")):
        query = query.where(RequestLog.created_at >= utcnow() - since)
    rows = list(
        db.scalars(
            query.order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
    )
    accounts = queries.pairs(db, select(UpstreamAccount.id, UpstreamAccount.label))
    return render_template(
        "logs/index.html",
        requests=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        page=page,
        args=args,
        pools=scope.visible_pools(),
        account_labels=accounts,
        pool_names={p.id: p.name for p in scope.visible_pools()},
        spans=list(SINCE),
    )
