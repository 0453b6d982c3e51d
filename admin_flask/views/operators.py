"""Operators (owner only): list, create, change role and pool assignments, disable, reset TOTP."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from sqlalchemy import select

from admin_flask import auditing, scope
from admin_flask.db import get_db
from admin_flask.forms import OperatorEditForm, OperatorForm
from pooler.errors import PoolerError
from pooler.models import Operator
from pooler.services import admin_sessions
from pooler.services import operators as ops
from pooler.states import OperatorRole

PREFIX = "/operators"
bp = Blueprint("operators", __name__)


@bp.before_request
def owners_only() -> None:
    principal = g.get("principal")
    if principal is not None and not principal.is_owner:
        abort(403)


def _pool_choices() -> list[tuple[int, str]]:
    return [(p.id, p.name) for p in scope.visible_pools()]


@bp.route("/")
def index() -> Any:
    db = get_db()
    operators = list(db.scalars(select(Operator).order_by(Operator.username)))
    pools = {op.id: sorted(ops.assigned_pool_ids(db, op.id)) for op in operators}
    form = OperatorForm()
    form.pool_ids.choices = _pool_choices()
    names = dict(_pool_choices())
    return render_template("operators/index.html", operators=operators, pools=pools, names=names, form=form)


@bp.route("/new", methods=["POST"])
def create() -> Any:
    form = OperatorForm()
    form.pool_ids.choices = _pool_choices()
    db = get_db()
    if not form.validate_on_submit():
        for name, errors in form.errors.items():
            flash(f"{getattr(form, name).label.text}: {'; '.join(errors)}", "error")
        return redirect(url_for("operators.index"))
    try:
        operator = ops.create_operator(
            db,
            username=form.username.data or "",
            password=form.password.data or "",
            role=form.role.data or OperatorRole.VIEWER,
            display_name=form.display_name.data,
            pool_ids=form.pool_ids.data if form.role.data == OperatorRole.ADMIN else [],
        )
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("operators.index"))
    auditing.record(
        "operator.create",
        "operator",
        operator.id,
        operator.username,
        details={"role": operator.role, "pools": form.pool_ids.data},
    )
    db.commit()
    flash(f"Operator {operator.username} created. Share the initial password out of band.", "ok")
    return redirect(url_for("operators.index"))


def _operator(operator_id: int) -> Operator:
    operator = get_db().get(Operator, operator_id)
    if operator is None:
        abort(404)
    return operator


def _would_remove_last_owner(operator: Operator, new_role: str, disabled: bool) -> bool:
    if operator.role != OperatorRole.OWNER or (new_role == OperatorRole.OWNER and not disabled):
        return False
    owners = get_db().scalars(
        select(Operator.id).where(Operator.role == OperatorRole.OWNER, Operator.disabled.is_(False))
    )
    return set(owners) <= {operator.id}


@bp.route("/<int:operator_id>", methods=["GET", "POST"])
def edit(operator_id: int) -> Any:
    operator = _operator(operator_id)
    db = get_db()
    form = OperatorEditForm(obj=operator)
    form.pool_ids.choices = _pool_choices()
    if not form.is_submitted():
        form.pool_ids.data = sorted(ops.assigned_pool_ids(db, operator.id))
    if form.validate_on_submit():
        role, disabled = form.role.data or operator.role, bool(form.disabled.data)
        if _would_remove_last_owner(operator, role, disabled):
            flash("At least one active owner must remain.", "error")
            return redirect(url_for("operators.edit", operator_id=operator.id))
        details: dict[str, Any] = {
            "old_role": operator.role,
            "role": role,
            "disabled": disabled,
            "pools": form.pool_ids.data,
        }
        if role != operator.role or (disabled and not operator.disabled):
            # A new role or a disabled operator starts from a fresh sign-in: every open session ends now.
            details["sessions_revoked"] = admin_sessions.revoke_operator(db, operator.id)
        operator.role, operator.disabled = role, disabled
        ops.set_pool_assignments(db, operator, form.pool_ids.data if role == OperatorRole.ADMIN else [])
        auditing.record("operator.update", "operator", operator.id, operator.username, details=details)
        db.commit()
        flash("Operator updated.", "ok")
        return redirect(url_for("operators.index"))
    return render_template("operators/edit.html", operator=operator, form=form)


@bp.route("/<int:operator_id>/reset-totp", methods=["POST"])
def reset_totp(operator_id: int) -> Any:
    operator = _operator(operator_id)
    ops.clear_totp(operator)
    operator.failed_logins, operator.locked_until = 0, None
    auditing.record("operator.totp_reset", "operator", operator.id, operator.username)
    get_db().commit()
    flash(f"Two-factor authentication of {operator.username} reset; they can set it up again after signing in.", "ok")
    return redirect(url_for("operators.index"))
