"""Dashboard: requests and tokens over time per pool, accounts by state, top keys, estimated cost."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import func, select

from admin_flask import attention, firstrun, pricing, queries, scope, security
from admin_flask.charts import Series, legend, line_chart
from admin_flask.db import get_db
from pooler.models import PoolKey, RequestLog, utcnow
from pooler.services import views

PREFIX = ""
bp = Blueprint("dashboard", __name__)
SPANS = {
    "6h": dt.timedelta(hours=6),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "14d": dt.timedelta(days=14),
    "30d": dt.timedelta(days=30),
}
BUCKETS = {"6h": 24, "24h": 24, "7d": 28, "14d": 28, "30d": 30}
"""Buckets per span: whole hours for a day, 6 and 12 hours for one and two weeks, days for a month."""


@bp.route("/")
def index() -> Any:
    db = get_db()
    now = utcnow()
    span_name = request.args.get("span", "24h")
    if span_name not in SPANS:
        span_name = "24h"
    span = SPANS[span_name]
    since = now - span
    pools = scope.visible_pools()
    pool_names: dict[object, str] = {p.id: p.label for p in pools}
    ids = scope.visible_pool_ids()
    grid = queries.buckets(now, span, BUCKETS[span_name])
    req_series, tok_series = queries.series_by(db, group="pool_id", since=since, grid=grid, pool_ids=ids)
    requests = [Series(pool_names.get(k, "(no pool)"), v) for k, v in sorted(req_series.items(), key=str)]
    tokens = [Series(pool_names.get(k, "(no pool)"), v) for k, v in sorted(tok_series.items(), key=str)]

    by_state = views.account_state_counts(db, include_deleted=True, within=scope.account_ids_in_scope())

    usage = select(
        RequestLog.pool_id,
        RequestLog.key_prefix,
        RequestLog.model,
        func.count(),
        func.coalesce(func.sum(RequestLog.input_tokens), 0),
        func.coalesce(func.sum(RequestLog.cached_tokens), 0),
        func.coalesce(func.sum(RequestLog.output_tokens), 0),
        func.coalesce(func.sum(RequestLog.total_tokens), 0),
    ).where(RequestLog.created_at >= since)
    if ids is not None:
        usage = usage.where(RequestLog.pool_id.in_(ids or {-1}))
    usage = usage.group_by(RequestLog.pool_id, RequestLog.key_prefix, RequestLog.model)
    table = pricing.load(db)
    key_stats: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    pool_cost: dict[int | None, float] = defaultdict(float)
    for pool_id, prefix, model, n, inp, cached, out, total in db.execute(usage):
        cost = pricing.estimate(table, model, int(inp or 0), int(cached or 0), int(out or 0))
        pool_cost[pool_id] += cost
        stats = key_stats[prefix or "(none)"]
        stats[0] += n
        stats[1] += total or 0
        stats[2] += cost
    labels = queries.pairs(db, select(PoolKey.prefix, PoolKey.label))
    top_keys = sorted(key_stats.items(), key=lambda kv: -kv[1][0])[:10]
    totals = {
        "requests": sum(sum(s.values) for s in requests),
        "tokens": sum(sum(s.values) for s in tokens),
        "cost": sum(pool_cost.values()),
    }
    return render_template(
        "dashboard/index.html",
        span_name=span_name,
        spans=list(SPANS),
        requests_chart=line_chart(requests, grid.labels, title="Requests per pool"),
        tokens_chart=line_chart(tokens, grid.labels, title="Tokens per pool"),
        legend=legend(requests),
        by_state=sorted(by_state.items()),
        top_keys=top_keys,
        key_labels=labels,
        pool_cost=[(pool_names.get(k, "(no pool)"), v) for k, v in sorted(pool_cost.items(), key=lambda kv: -kv[1])],
        totals=totals,
        pools=pools,
        view=attention.Attention(db, security.current(), now),
        setup_steps=firstrun.checklist(firstrun.setup_facts(db, ids)),
        badges=queries.pool_badges(db, pools, queries.readiness_by_pool(db, pools)),
    )
