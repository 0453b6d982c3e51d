"""Upstream accounts: cards with quota and readiness, import/replace auth.json, lifecycle actions, cockpit."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from admin_flask import MAX_UPLOAD_BYTES, auditing, back, pricing, queries, scope, security
from admin_flask.db import change, core, get_db
from admin_flask.forms import ActionForm, AssignForm, ImportForm, RenameForm, ReplaceAuthForm
from pooler import lifecycle
from pooler.audit import Actor
from pooler.errors import AuthJsonError, PoolerError
from pooler.models import AuditEvent, RequestLog, UpstreamAccount, utcnow
from pooler.services import accounts as account_service
from pooler.states import AccountState, ActorType, PoolStatus

PREFIX = "/accounts"
bp = Blueprint("accounts", __name__)


class TooLarge(Exception):
    pass


def _pool_choices() -> list[tuple[int, str]]:
    return [(p.id, f"{p.label} ({p.name})") for p in scope.visible_pools(include_archived=False)]


@bp.route("/")
def index() -> Any:
    db = get_db()
    q = (request.args.get("q") or "").strip()
    pool_id = request.args.get("pool", type=int)
    state = request.args.get("state") or ""
    if pool_id:
        scope.pool_or_404(pool_id)
    query = queries.account_query(
        pool_id=pool_id or None,
        state=state or None,
        # A state filter shows deleted accounts too (state "deleted" is one of the choices).
        include_deleted=bool(state or request.args.get("deleted")),
        search=q,
        within=scope.account_ids_in_scope(),
    )
    cards = queries.cards(db, list(db.scalars(query).unique()))
    form = ImportForm()
    form.pool_id.choices = _pool_choices()
    if pool_id:
        form.pool_id.data = pool_id
    return render_template(
        "accounts/index.html",
        cards=cards,
        pools=scope.visible_pools(),
        states=[s.value for s in AccountState],
        filters={"q": q, "pool": pool_id, "state": state},
        import_form=form,
        action=ActionForm(),
    )


def _auth_bytes(pasted: str | None, upload: FileStorage | None) -> bytes | None:
    """The auth.json bytes from an upload (preferred) or the paste box; TooLarge above 64 KiB."""
    if upload is not None and upload.filename:
        data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    elif pasted and pasted.strip():
        data = pasted.encode()
    else:
        return None
    if len(data) > MAX_UPLOAD_BYTES:
        raise TooLarge
    return data


def _too_large(template: str, **context: Any) -> Any:
    flash(f"The auth.json is too large: the limit is {MAX_UPLOAD_BYTES // 1024} KiB.", "error")
    return render_template(template, **context), 413


@bp.route("/import", methods=["GET", "POST"])
def import_auth() -> Any:
    form = ImportForm()
    form.pool_id.choices = _pool_choices()
    wanted: int | None = request.args.get("pool", type=int)
    if request.method == "GET" and wanted:
        form.pool_id.data = wanted
    if form.validate_on_submit():
        pool = scope.pool_or_404(form.pool_id.data or 0)
        try:
            data = _auth_bytes(form.auth_json.data, form.upload.data)
        except TooLarge:
            form.auth_json.data = ""
            return _too_large("accounts/import.html", form=form)
        # Never send the contents back, whatever happens next.
        form.auth_json.data = ""
        if data is None:
            flash("Paste an auth.json or choose a file.", "error")
            return render_template("accounts/import.html", form=form), 400
        db = get_db()
        try:
            result = account_service.import_auth_json(
                db, core().box, pool=pool, data=data, actor=auditing.actor(), label=form.label.data or None
            )
        except PoolerError as exc:
            db.rollback()
            flash(f"Import refused: {exc}", "error")
            return render_template("accounts/import.html", form=form), 400
        db.commit()
        verb = "Imported" if result.created else "Updated credentials of"
        flash(f"{verb} {result.label} into {result.pool_name} (state: {result.state}).", "ok")
        return redirect(url_for("accounts.show", account_id=result.account_id))
    form.auth_json.data = ""
    return render_template("accounts/import.html", form=form)


@bp.route("/<int:account_id>")
def show(account_id: int) -> Any:
    account = scope.account_or_404(account_id)
    db = get_db()
    card = queries.cards(db, [account])[0]
    ids = scope.visible_pool_ids()
    recent = select(RequestLog).where(RequestLog.account_id == account.id)
    if ids is not None:
        recent = recent.where(RequestLog.pool_id.in_(ids or {-1}))
    requests = list(db.scalars(recent.order_by(RequestLog.created_at.desc()).limit(50)))
    events = list(
        db.scalars(
            select(AuditEvent)
            .where(AuditEvent.target_type == "account", AuditEvent.target_id == str(account.id))
            .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
            .limit(200)
        )
    )
    history = [e for e in events if e.action in ("account.state_change", "account.import", "account.reimport")]
    assign = AssignForm()
    assigned = {a.pool_id for a in account.assignments}
    assign.pool_id.choices = [(pid, label) for pid, label in _pool_choices() if pid not in assigned]
    return render_template(
        "accounts/show.html",
        card=card,
        account=account,
        requests=requests,
        costs=pricing.costs_of(db, requests),
        account_labels={account.id: account.label},
        pool_names={p.id: p.name for p, _ in card.pools},
        history=history,
        events=events,
        rename=RenameForm(label=account.label),
        assign=assign,
        replace=ReplaceAuthForm(),
        action=ActionForm(),
        exclusions=account_service.model_exclusions(db, account.id),
    )


def _writable(account_id: int) -> UpstreamAccount:
    # CSRFProtect has already rejected any POST without a valid token; scope is what is left to check.
    return scope.account_or_404(account_id)


def _back(account: UpstreamAccount) -> Any:
    """Where the action was posted from (a card on a list, the pool page), else the account's page."""
    return back.redirect_back(url_for("accounts.show", account_id=account.id))


def _transition(account_id: int, new_state: AccountState, reason: str, done: str) -> Any:
    account = _writable(account_id)
    db = get_db()
    try:
        lifecycle.transition(
            db,
            account,
            new_state,
            actor=Actor(ActorType.OPERATOR, security.current().username),
            reason=reason,
        )
    except PoolerError as exc:
        db.rollback()
        flash(f"Not possible from state {account.state}: {exc}", "error")
        return _back(account)
    if new_state == AccountState.DELETED:
        account.deleted_at = utcnow()
    db.commit()
    flash(f"{account.label} {done}.", "ok")
    return _back(account)


@bp.route("/<int:account_id>/pause", methods=["POST"])
def pause(account_id: int) -> Any:
    return _transition(account_id, AccountState.PAUSED, "operator", "paused")


@bp.route("/<int:account_id>/reactivate", methods=["POST"])
def reactivate(account_id: int) -> Any:
    return _transition(account_id, AccountState.ACTIVE, "operator", "reactivated")


@bp.route("/<int:account_id>/exclusions/clear", methods=["POST"])
def clear_exclusion(account_id: int) -> Any:
    account = _writable(account_id)
    model, actor = request.form.get("model", ""), auditing.actor()
    change(
        lambda db: account_service.clear_model_exclusion(db, account.id, model, actor=actor),
        f"{account.label} may serve {model} again.",
    )
    return _back(account)


@bp.route("/<int:account_id>/delete", methods=["POST"])
def delete(account_id: int) -> Any:
    return _transition(account_id, AccountState.DELETED, "operator", "deleted (credentials kept until purge)")


@bp.route("/<int:account_id>/refresh", methods=["POST"])
def refresh(account_id: int) -> Any:
    account = _writable(account_id)
    label, actor = account.label, auditing.actor()
    change(
        lambda db: account_service.request_refresh(db, account.id, actor=actor),
        f"Token refresh requested for {label}; the scheduler picks it up shortly.",
    )
    return _back(account)


@bp.route("/<int:account_id>/rename", methods=["POST"])
def rename(account_id: int) -> Any:
    account = _writable(account_id)
    form = RenameForm()
    if not form.validate_on_submit():
        flash("A label of 1-200 characters is required.", "error")
        return _back(account)
    label, actor = form.label.data or "", auditing.actor()
    change(lambda db: account_service.rename_account(db, account.id, label, actor=actor), "Renamed.")
    return _back(account)


@bp.route("/<int:account_id>/assign", methods=["POST"])
def assign(account_id: int) -> Any:
    account = _writable(account_id)
    form = AssignForm()
    form.pool_id.choices = _pool_choices()
    if not form.validate_on_submit():
        flash("Choose a pool.", "error")
        return _back(account)
    pool = scope.pool_or_404(form.pool_id.data or 0)
    if pool.status == PoolStatus.ARCHIVED:
        abort(404)
    priority, actor = form.priority.data if form.priority.data is not None else 100, auditing.actor()
    change(
        lambda db: account_service.assign_account(db, account.id, pool, actor=actor, priority=priority),
        f"Assigned to {pool.name}.",
    )
    return _back(account)


@bp.route("/<int:account_id>/unassign/<int:pool_id>", methods=["POST"])
def unassign(account_id: int, pool_id: int) -> Any:
    account = _writable(account_id)
    pool = scope.pool_or_404(pool_id)
    if not any(a.pool_id == pool.id for a in account.assignments):
        abort(404)
    actor = auditing.actor()
    done = change(
        lambda db: account_service.unassign_account(db, account.id, pool, actor=actor),
        f"Removed from {pool.name}.",
    )
    ids = scope.visible_pool_ids()
    if done and ids is not None and not any(a.pool_id in ids for a in account.assignments):
        return redirect(url_for("accounts.index"))  # an admin can no longer see it
    return _back(account)


@bp.route("/<int:account_id>/replace", methods=["POST"])
def replace(account_id: int) -> Any:
    account = scope.account_or_404(account_id)
    form = ReplaceAuthForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        data = _auth_bytes(form.auth_json.data, form.upload.data)
    except TooLarge:
        message = f"The auth.json is too large: the limit is {MAX_UPLOAD_BYTES // 1024} KiB."
        return render_template("errors/error.html", status=413, message=message, path=request.path), 413
    if data is None:
        flash("Paste an auth.json or choose a file.", "error")
        return _back(account)
    pools = [a for a in account.assignments if security.current().sees_pool(a.pool_id)]
    if not pools:
        abort(404)
    db = get_db()
    try:
        parsed_id = _chatgpt_id(data)
        if parsed_id != account.chatgpt_account_id:
            raise AuthJsonError("this auth.json belongs to a different ChatGPT account; use Import instead")
        account_service.import_auth_json(
            db, core().box, pool=pools[0].pool, data=data, actor=auditing.actor(), replace=True
        )
    except PoolerError as exc:
        db.rollback()
        flash(f"Replace refused: {exc}", "error")
        return _back(account)
    db.commit()
    flash("Credentials replaced.", "ok")
    return _back(account)


def _chatgpt_id(data: bytes) -> str:
    from pooler.authjson import parse_auth_json

    return parse_auth_json(data).chatgpt_account_id
