"""Request logs (metadata only): filter by pool, key, account, status class, model and time; paged, with an
estimated cost per request, a detail page with the failover chain, and a streamed CSV export of the filtered list.
Prompts and outputs are never stored, so none of these can show them."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, stream_with_context
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from admin_flask import pricing, scope, security
from admin_flask.db import get_db
from pooler.models import PoolKey, RequestLog, utcnow
from pooler.services import views
from pooler.timefmt import timestamp

PREFIX = "/logs"
bp = Blueprint("logs", __name__)
PAGE_SIZE = 50
EXPORT_BATCH = 500
SINCE = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
EXPORT_COLUMNS = (
    "time",
    "request_id",
    "pool",
    "key_prefix",
    "account",
    "method",
    "route_family",
    "model",
    "status",
    "error_code",
    "attempts",
    "ttfb_ms",
    "duration_ms",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "estimated_cost_usd",
)


def _filtered() -> Select[RequestLog]:
    """The list's query from the request's filters (pool scope enforced); 400/404 for a bad filter."""
    db = get_db()
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
    return query.order_by(RequestLog.created_at.desc(), RequestLog.id.desc())


def _labels(db: Session) -> tuple[dict[Any, Any], dict[int, str]]:
    accounts = views.account_labels(db)
    return accounts, {p.id: p.name for p in scope.visible_pools()}


@bp.route("/")
def index() -> Any:
    db = get_db()
    args = {k: v for k, v in request.args.items() if v and k != "page"}
    page = max(1, request.args.get("page", 1, type=int))
    rows = list(db.scalars(_filtered().offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
    accounts, pool_names = _labels(db)
    return render_template(
        "logs/index.html",
        requests=rows[:PAGE_SIZE],
        costs=pricing.costs_of(db, rows[:PAGE_SIZE]),
        has_next=len(rows) > PAGE_SIZE,
        page=page,
        args=args,
        pools=scope.visible_pools(),
        account_labels=accounts,
        pool_names=pool_names,
        spans=list(SINCE),
    )


@bp.route("/<int:log_id>")
def show(log_id: int) -> Any:
    db = get_db()
    row = db.get(RequestLog, log_id)
    ids = scope.visible_pool_ids()
    if row is None or (ids is not None and row.pool_id not in ids):
        abort(404)
    accounts, pool_names = _labels(db)
    key = db.scalar(select(PoolKey).where(PoolKey.prefix == row.key_prefix)) if row.key_prefix else None
    return render_template(
        "logs/show.html",
        r=row,
        cost=pricing.request_cost(pricing.load(db), row),
        key=key,
        account_labels=accounts,
        pool_names=pool_names,
    )


def csv_lines(rows: Iterable[RequestLog], table: pricing.Prices, pools: dict[int, str]) -> Iterator[str]:
    """The export as CSV text, one chunk per row (metadata columns only, EXPORT_COLUMNS)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(EXPORT_COLUMNS)
    yield flush()
    for r in rows:
        writer.writerow(
            (
                timestamp(r.created_at),
                r.request_id or "",
                pools.get(r.pool_id or 0, "") if r.pool_id else "",
                r.key_prefix or "",
                r.account_id or "",
                r.method,
                r.route_family,
                r.model or "",
                r.status_code,
                r.error_code or "",
                r.attempt_count,
                "" if r.ttfb_ms is None else f"{r.ttfb_ms:.0f}",
                "" if r.duration_ms is None else f"{r.duration_ms:.0f}",
                *("" if v is None else v for v in (r.input_tokens, r.cached_tokens, r.output_tokens)),
                *("" if v is None else v for v in (r.reasoning_tokens, r.total_tokens)),
                f"{pricing.request_cost(table, r):.6f}",
            )
        )
        yield flush()


@bp.route("/export.csv")
def export() -> Any:
    """Every row matching the filters (no paging), streamed in batches so a month of logs never sits in memory."""
    db = get_db()
    query = _filtered()
    table = pricing.load(db)
    _, pool_names = _labels(db)

    def rows() -> Iterator[RequestLog]:
        yield from db.scalars(query.execution_options(yield_per=EXPORT_BATCH))

    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return Response(
        stream_with_context(csv_lines(rows(), table, pool_names)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="request-logs-{stamp}.csv"'},
    )
