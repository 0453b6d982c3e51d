"""Pool activity: per-account requests, success rate, health score, failovers and a timeline chart."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import case, func, select

from admin_flask import queries, scope
from admin_flask.charts import Series, legend, line_chart
from admin_flask.db import get_db
from admin_flask.health import ActivityStats, health_level, health_score, success_rate
from pooler.models import RequestAttempt, RequestLog, utcnow
from pooler.services import views

PREFIX = "/pools"
bp = Blueprint("activity", __name__)
SPANS = {"1h": dt.timedelta(hours=1), "6h": dt.timedelta(hours=6), "24h": dt.timedelta(hours=24)}


@bp.route("/<int:pool_id>/activity")
def show(pool_id: int) -> Any:
    pool = scope.pool_or_404(pool_id)
    db = get_db()
    now = utcnow()
    span_name = request.args.get("span", "6h")
    span = SPANS.get(span_name, SPANS["6h"])
    since = now - span
    per_request = db.execute(
        select(
            RequestLog.account_id,
            func.count(),
            func.sum(case((RequestLog.status_code < 400, 1), else_=0)),
            func.avg(RequestLog.ttfb_ms),
            func.coalesce(func.sum(RequestLog.total_tokens), 0),
        )
        .where(RequestLog.pool_id == pool.id, RequestLog.created_at >= since)
        .group_by(RequestLog.account_id)
    ).all()
    attempts = db.execute(
        select(
            RequestAttempt.account_id,
            func.count(),
            func.sum(case((RequestAttempt.outcome == "failed_over", 1), else_=0)),
            # A failover *to* this account: it served an attempt after the first.
            func.sum(case((RequestAttempt.attempt_number > 1, 1), else_=0)),
        )
        .join(RequestLog, RequestLog.id == RequestAttempt.request_log_id)
        .where(RequestLog.pool_id == pool.id, RequestLog.created_at >= since)
        .group_by(RequestAttempt.account_id)
    ).all()
    attempt_stats = {a: (int(n), int(f or 0), int(t or 0)) for a, n, f, t in attempts}
    labels: dict[Any, str] = views.account_labels(db)  # series keys are untyped account ids
    member_ids = {a.account_id for a in pool.assignments}
    rows = []
    seen = set()
    for account_id, n, ok, ttfb, tokens in per_request:
        seen.add(account_id)
        n_att, failed_from, failover_to = attempt_stats.get(account_id, (0, 0, 0))
        stats = ActivityStats(int(n), int(ok or 0), float(ttfb) if ttfb is not None else None, n_att, failed_from)
        rows.append(
            {
                "account_id": account_id,
                "label": labels.get(account_id, "(no account)") if account_id else "(rejected before routing)",
                "requests": int(n),
                "tokens": int(tokens),
                "success": success_rate(stats),
                "ttfb": stats.avg_ttfb_ms,
                "health": health_score(stats),
                "failovers_to": failover_to,
                "failed_over_from": failed_from,
            }
        )
    for account_id in member_ids - seen:
        rows.append(
            {
                "account_id": account_id,
                "label": labels.get(account_id, "?"),
                "requests": 0,
                "tokens": 0,
                "success": None,
                "ttfb": None,
                "health": None,
                "failovers_to": 0,
                "failed_over_from": 0,
            }
        )
    # What can route now, beside the span's history: a high score of an account that is out now is not health.
    members = list(db.scalars(queries.account_query(within=member_ids or {-1})).unique())
    stale = queries.stale_after(db)
    now_by_id = {a.id: queries.readiness_of(a, {pool.id: pool}, now, stale) for a in members}
    for row in rows:
        readiness = now_by_id.get(row["account_id"])
        row["now"] = readiness
        row["level"] = health_level(row["health"], readiness is None or readiness.routable)
    rows.sort(key=lambda r: (-r["requests"], r["label"]))
    grid = queries.buckets(now, span, 24)
    req, _tokens = queries.series_by(db, group="account_id", since=since, grid=grid, pool_ids={pool.id})
    series = [Series(labels.get(k, "(none)") if k else "(none)", v) for k, v in sorted(req.items(), key=str)]
    errors: dict[object, list[float]] = defaultdict(lambda: [0.0] * len(grid.starts))
    for created, _status in db.execute(
        select(RequestLog.created_at, RequestLog.status_code).where(
            RequestLog.pool_id == pool.id, RequestLog.created_at >= since, RequestLog.status_code >= 400
        )
    ):
        if (i := grid.index(created)) is not None:
            errors["errors"][i] += 1
    error_series = [Series("errors (4xx/5xx)", errors["errors"])] if errors else []
    return render_template(
        "activity/show.html",
        pool=pool,
        rows=rows,
        span_name=span_name,
        spans=list(SPANS),
        chart=line_chart(series + error_series, grid.labels, title=f"Requests per account in {pool.name}"),
        legend=legend(series + error_series),
        refreshed=now,
        routable_now=sum(1 for r in now_by_id.values() if r.routable),
        members=len(now_by_id),
    )
