"""Audit log: operator actions and scheduler/gateway state changes, newest first, filterable and paged."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import and_, or_, select

from admin_flask import scope, security
from admin_flask.db import get_db
from pooler.models import AuditEvent, PoolKey

PREFIX = "/audit"
bp = Blueprint("audit", __name__)
PAGE_SIZE = 50


@bp.route("/")
def index() -> Any:
    db = get_db()
    page = max(1, request.args.get("page", 1, type=int))
    args = {k: v for k, v in request.args.items() if v and k != "page"}
    query = select(AuditEvent)
    ids = scope.visible_pool_ids()
    if ids is not None:
        # An admin sees events about its pools and about accounts/keys in them (plus its own actions).
        pool_ids = [str(i) for i in ids]
        account_ids = [str(i) for i in db.scalars(scope.account_ids_in_scope())]  # type: ignore[arg-type]
        key_ids = [str(i) for i in db.scalars(select(PoolKey.id).where(PoolKey.pool_id.in_(ids or {-1})))]
        query = query.where(
            or_(
                and_(AuditEvent.target_type == "pool", AuditEvent.target_id.in_(pool_ids)),
                and_(AuditEvent.target_type == "account", AuditEvent.target_id.in_(account_ids)),
                and_(AuditEvent.target_type == "key", AuditEvent.target_id.in_(key_ids)),
                AuditEvent.actor_label == security.current().username,
            )
        )
    if action := request.args.get("action"):
        query = query.where(AuditEvent.action.like(f"{action[:64]}%"))
    if actor := request.args.get("actor"):
        query = query.where(AuditEvent.actor_type == actor[:16])
    if target := request.args.get("target"):
        query = query.where(AuditEvent.target_type == target[:32])
    rows = list(
        db.scalars(
            query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
    )
    return render_template(
        "audit/index.html", events=rows[:PAGE_SIZE], has_next=len(rows) > PAGE_SIZE, page=page, args=args
    )
