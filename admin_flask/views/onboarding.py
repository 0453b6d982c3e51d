"""OAuth link (Upstreams page) and relink (account cockpit): browser PKCE with a pasted callback URL, or the
device code. The flow is bound to the operator and to this browser session; there is no public callback route.
Only error codes and metadata are shown or audited; the callback URL is never echoed back into the page."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template, session, url_for

from admin_flask import scope, security
from admin_flask.db import core, get_db
from admin_flask.forms import ActionForm
from admin_flask.forms_onboarding import CallbackForm, StartLinkForm, StartRelinkForm
from pooler.errors import NotFoundError
from pooler.onboarding import flows
from pooler.onboarding.errors import ERROR_MESSAGES, OnboardingError
from pooler.onboarding.priming import prime_account
from pooler.onboarding.types import LinkOutcome, Method, OperatorScope, Purpose, Requester
from pooler.services.refresh import make_http_client

PREFIX = "/onboarding"
BINDING_KEY = "oauth_binding"
bp = Blueprint("onboarding", __name__)


def register(app: Flask, url_prefix: str) -> None:
    app.register_blueprint(bp, url_prefix=url_prefix + PREFIX)


def browser_binding() -> str:
    """A random nonce in this browser's signed session cookie; flows store only its keyed hash."""
    binding = session.get(BINDING_KEY)
    if not isinstance(binding, str):
        binding = secrets.token_urlsafe(24)
        session[BINDING_KEY] = binding
    return binding


def operator_scope() -> OperatorScope:
    me = security.current()
    return OperatorScope(me.id, me.username, me.role, me.pool_ids)


def requester() -> Requester:
    return Requester(operator_scope(), browser_binding())


def _pool_choices() -> list[tuple[int, str]]:
    return [(p.id, f"{p.label} ({p.name})") for p in scope.visible_pools(include_archived=False)]


def error_context(exc: OnboardingError) -> dict[str, str]:
    return {"code": exc.code, "message": ERROR_MESSAGES[exc.code]}


@bp.route("/link", methods=["GET", "POST"])
def link() -> Any:
    form = StartLinkForm()
    form.pool_id.choices = _pool_choices()
    error = None
    if form.validate_on_submit():
        try:
            return _start(Purpose.LINK, form.method.data or "browser", form.pool_id.data, None)
        except OnboardingError as exc:
            get_db().rollback()
            error = error_context(exc)
    return render_template("onboarding/start.html", form=form, purpose="link", account=None, error=error), (
        400 if error else 200
    )


@bp.route("/relink/<int:account_id>", methods=["GET", "POST"])
def relink(account_id: int) -> Any:
    account = scope.account_or_404(account_id)
    form = StartRelinkForm()
    error = None
    if form.validate_on_submit():
        try:
            return _start(Purpose.RELINK, form.method.data or "browser", None, account.id)
        except OnboardingError as exc:
            get_db().rollback()
            error = error_context(exc)
    return render_template("onboarding/start.html", form=form, purpose="relink", account=account, error=error), (
        400 if error else 200
    )


def _start(purpose: Purpose, method: str, pool_id: int | None, account_id: int | None) -> Any:
    db, ctx = get_db(), core()
    config = flows.load_oauth_config(db)
    try:
        if method == Method.DEVICE:
            with make_http_client() as http:
                started = flows.start_device_flow(
                    db,
                    ctx.box,
                    ctx.hasher,
                    http,
                    config,
                    operator=operator_scope(),
                    binding=browser_binding(),
                    purpose=purpose,
                    pool_id=pool_id,
                    account_id=account_id,
                )
            flow_id = started.flow_id
        else:
            flow_id = flows.start_browser_flow(
                db,
                ctx.box,
                ctx.hasher,
                config,
                operator=operator_scope(),
                binding=browser_binding(),
                purpose=purpose,
                pool_id=pool_id,
                account_id=account_id,
            ).flow_id
    except NotFoundError:
        abort(404)
    db.commit()
    return redirect(url_for("onboarding.flow", flow_id=flow_id))


def _render_flow(flow_id: int, error: dict[str, str] | None = None, status: int = 200) -> Any:
    db, ctx = get_db(), core()
    try:
        view = flows.describe_flow(
            db, ctx.box, ctx.hasher, flows.load_oauth_config(db), flow_id=flow_id, requester=requester()
        )
    except NotFoundError:
        abort(404)
    if error is None and view.error_code and view.status != "pending":
        error = {"code": view.error_code, "message": ERROR_MESSAGES.get(view.error_code, view.error_code)}
    account = scope.account_or_404(view.account_id) if view.purpose == "relink" and view.account_id else None
    return render_template(
        "onboarding/flow.html",
        view=view,
        account=account,
        error=error,
        callback=CallbackForm(formdata=None),
        action=ActionForm(),
    ), status


@bp.route("/flows/<int:flow_id>")
def flow(flow_id: int) -> Any:
    return _render_flow(flow_id)


def _linked(outcome: LinkOutcome) -> Any:
    db, ctx = get_db(), core()
    db.commit()
    with make_http_client() as http:
        primed = prime_account(
            ctx.session_factory, ctx.box, http, outcome.account_id, actor_label=security.current().username
        )
    db.expire_all()
    account = scope.account_or_404(outcome.account_id)
    return render_template("onboarding/done.html", outcome=outcome, account=account, primed=primed)


@bp.route("/flows/<int:flow_id>/callback", methods=["POST"])
def callback(flow_id: int) -> Any:
    form = CallbackForm()
    pasted = form.callback_url.data or ""
    form.callback_url.data = ""  # never sent back
    db, ctx = get_db(), core()
    try:
        with make_http_client() as http:
            outcome = flows.complete_browser_flow(
                db,
                ctx.box,
                ctx.hasher,
                http,
                flows.load_oauth_config(db),
                flow_id=flow_id,
                requester=requester(),
                callback_url=pasted,
            )
    except NotFoundError:
        abort(404)
    except OnboardingError as exc:
        db.commit()  # a failed flow is recorded as failed
        return _render_flow(flow_id, error_context(exc), 400)
    return _linked(outcome)


@bp.route("/flows/<int:flow_id>/poll", methods=["POST"])
def poll(flow_id: int) -> Any:
    db, ctx = get_db(), core()
    try:
        with make_http_client() as http:
            result = flows.poll_device_flow(
                db, ctx.box, ctx.hasher, http, flows.load_oauth_config(db), flow_id=flow_id, requester=requester()
            )
    except NotFoundError:
        abort(404)
    except OnboardingError as exc:
        db.commit()
        return _render_flow(flow_id, error_context(exc), 400)
    if isinstance(result, LinkOutcome):
        return _linked(result)
    db.commit()
    return redirect(url_for("onboarding.flow", flow_id=flow_id))
